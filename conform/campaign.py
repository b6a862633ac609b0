"""A conformance campaign: the lockstep state machine run for N examples of
at most M steps, with what it covered and, on a divergence, the shrunk trace.

Hypothesis generates; it does not shrink. A divergence's trace is shrunk by
``conform.shrink`` (step deletion against fresh providers, to a 1-minimal
trace), which takes seconds where Hypothesis's own shrinking of a long
stateful example took minutes and left steps that did not matter.
"""

from __future__ import annotations

import functools
import time
import unittest
from typing import Callable

import attrs
from hypothesis import HealthCheck, Phase, Verbosity
from hypothesis.database import ExampleDatabase
from hypothesis.errors import Flaky

from sanspi.conform.coverage import UNREACHABLE, Coverage, behaviour_targets, outcome_targets, uncovered
from sanspi.conform.exampledb import open_database
from sanspi.conform.machine import make_machine
from sanspi.conform.shrink import shrink as shrink_trace
from sanspi.conform.world import Divergence, Logged, World
from sanspi.impl.interface import Capabilities, ProviderFactory
from sanspi.model.state import Config
from sanspi.seeded import run_seeded

#: Hypothesis profiles: ``ci`` is quick, ``long`` is for campaigns that run for hours.
PROFILES = {"ci": dict(examples=200, steps=40), "long": dict(examples=5000, steps=100)}
#: At most this many extra rounds (half the examples each) while a target
#: (conform/coverage.py) is still unreached (``run_campaign``'s ``top_up``).
TOP_UP_ROUNDS = 5


def model_config(caps: Capabilities, pages: int = Config().pages, page_size: int = 4096, sockets: int = 2) -> Config:
    """The model's Config for a provider with these capabilities."""
    return Config(pages=pages, page_size=page_size, slots=caps.slots, sockets=sockets, max_sge=caps.max_sge,
                  has_rdma_read=caps.has_rdma_read, has_cache=caps.has_cache,
                  descriptor_size=caps.descriptor_size, max_startups=caps.max_startups)


@attrs.frozen
class CampaignResult:
    provider: str
    examples: int  # examples Hypothesis ran
    steps: int  # steps run on the model and the provider, all examples together
    seconds: float
    coverage: Coverage
    divergence: str | None = None
    trace: tuple[Logged, ...] = ()
    rounds: int = 1  # Hypothesis runs: the first, then top-up rounds for coverage
    find_seconds: float = 0.0  # from the start to the first divergence
    shrink_seconds: float = 0.0  # shrinking its trace
    found_steps: int = 0  # steps of the divergence's trace as found, before shrinking
    minimal: bool = False  # no single step of ``trace`` can go and keep the divergence
    found_example: int = 0  # the example (from 1) that diverged: 1 when the example database replayed it

    @property
    def ok(self) -> bool:
        return self.divergence is None


@functools.lru_cache(maxsize=8)
def campaign_targets(cfg: Config) -> frozenset[str]:
    """Everything a campaign on this configuration must reach: every
    outcome z3 proves possible, every behaviour class (conform/coverage.py).
    Kept per configuration: z3 takes seconds, and a process (a test run, a
    run of several campaigns) asks again and again."""
    return frozenset(outcome_targets(cfg) | behaviour_targets(cfg))


def run_campaign(factory: ProviderFactory, cfg: Config, examples: int = 60,
                 steps: int = 40, seed: int | None = None, use_database: bool = True,
                 database: ExampleDatabase | None = None,
                 progress: Callable[[str], None] | None = None, name: str = "provider",
                 shrink: bool = True, targets: set[str] | None = None,
                 top_up: int = 0, shrink_budget_s: float = 120.0, replay_only: bool = False) -> CampaignResult:
    """Run the campaign. ``shrink=False`` stops at the first divergence as
    found (the mutation check measures time to kill, not the shortest trace).

    With ``targets`` (``campaign_targets``) and ``top_up`` > 0, while some
    target is neither reached nor UNREACHABLE, up to ``top_up`` more rounds
    of half the examples run under the next seeds: the rare paths are random
    draws, and one run can miss one.

    The example database (``database``, else the default folder for
    ``name`` and ``cfg``, conform/exampledb.py) is replayed first, so a
    divergence found once is found again at once. Hypothesis uses it only
    when ``seed`` is None: a seeded run is repeatable, so it reads nothing.
    ``replay_only`` runs only the examples the database holds.
    """
    worlds: list[World] = []
    diverged: list[World] = []
    coverage = Coverage()
    counted = {"steps": 0, "examples": 0, "rounds": 0, "found": 0}

    def keep(world: World) -> None:
        if worlds:  # fold the finished example's coverage in
            _fold(coverage, worlds[-1], counted)
            if worlds[-1].divergence and not diverged:
                diverged.append(worlds[-1])  # the first World that diverged: its log is the trace
                counted["found"] = counted["examples"]
        worlds[:] = [world]
        counted["examples"] += 1
        if progress and counted["examples"] % 10 == 0:
            progress(f"{name}: {counted['examples']} examples, {counted['steps']} steps")

    machine = make_machine(factory, cfg, keep)
    db = (database or open_database(None, name, cfg)) if use_database else None
    phases = ([Phase.explicit, Phase.reuse] if replay_only else
              [p for p in Phase if p not in (Phase.shrink, Phase.explain)])

    def one_round(round_seed: int | None, n: int) -> str | None:
        counted["rounds"] += 1
        found = None
        try:
            run_seeded(machine, round_seed, max_examples=n, stateful_step_count=steps, deadline=None, database=db,
                       suppress_health_check=list(HealthCheck), print_blob=False, phases=phases,
                       verbosity=Verbosity.quiet, report_multiple_bugs=False)
        except (Divergence, Flaky) as exc:
            found = str(exc).splitlines()[0]
        except unittest.SkipTest:  # nothing to replay: Hypothesis ran no example
            if not replay_only:
                raise
        except Exception as exc:  # noqa: BLE001  anything else out of a step is reported, not hidden
            found = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if worlds:  # the round's last example
            _fold(coverage, worlds[-1], counted)
            if worlds[-1].divergence and not diverged:
                diverged.append(worlds[-1])
                counted["found"] = counted["examples"]
            worlds.clear()
        return found

    start = time.perf_counter()
    divergence = one_round(seed, examples)
    for r in range(1, top_up + 1):
        if divergence or not targets or not uncovered(coverage, targets, skip=UNREACHABLE):
            break
        divergence = one_round(None if seed is None else seed + r, max(1, examples // 2))
    found_at = time.perf_counter() - start
    trace = tuple(diverged[0].log) if diverged and divergence else ()
    if diverged and divergence:
        divergence = diverged[0].divergence.splitlines()[0]
    shrunk, shrink_s, minimal = trace, 0.0, False
    if divergence and shrink and trace:
        if progress:
            progress(f"{name}: divergence after {found_at:.0f} s; shrinking its {len(trace)} steps")
        shrunk, divergence, shrink_s, minimal = shrink_divergence(factory, cfg, trace, divergence, shrink_budget_s)
    return CampaignResult(name, counted["examples"], counted["steps"], time.perf_counter() - start, coverage,
                          divergence, shrunk, counted["rounds"], found_at, shrink_s, len(trace), minimal,
                          counted["found"])


def shrink_divergence(factory: ProviderFactory, cfg: Config, trace: tuple[Logged, ...], divergence: str,
                      budget_s: float) -> tuple[tuple[Logged, ...], str, float, bool]:
    """(trace, divergence, seconds, minimal) after shrinking ``trace``; as
    found when it does not diverge again on fresh providers (a flaky provider)."""
    result = shrink_trace(factory, cfg, list(trace), budget_s=budget_s)
    if result is None:
        return trace, divergence, 0.0, False
    return result.steps, result.message.splitlines()[0], result.seconds, result.minimal


def _fold(coverage: Coverage, world: World, counted: dict) -> None:
    coverage.add(world.coverage)
    counted["steps"] += len(world.log)


def replay(spec: str, cfg: Config, steps: list[tuple[str, dict]]) -> None:
    """Run a recorded trace on a fresh pair of ``spec`` providers; a divergence raises."""
    from sanspi.conform.providers import load_factory

    world = World(load_factory(spec, cfg.pages, cfg.page_size)(), cfg)
    try:
        for name, args in steps:
            world.step(name, **args)
    finally:
        for p in world.providers:
            p.shutdown()
