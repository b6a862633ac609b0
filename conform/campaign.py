"""A conformance campaign: the lockstep state machine run for N examples of
at most M steps, with what it covered and, on a divergence, the shrunk trace."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Collection

import attrs
import hypothesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import Flaky
from hypothesis.stateful import run_state_machine_as_test

from sanspi.conform.machine import make_machine
from sanspi.conform.world import Divergence, Logged, World
from sanspi.impl.interface import Capabilities, Provider
from sanspi.model.state import Config

CACHE_DIR = Path(os.environ.get("SANSPI_CACHE", Path.home() / ".cache" / "sanspi"))

#: Hypothesis profiles: ``ci`` is quick, ``long`` is for campaigns that run for hours.
PROFILES = {"ci": dict(examples=200, steps=40), "long": dict(examples=5000, steps=100)}
#: At most this many extra rounds (half the examples each) while an outcome
#: the model allows is still unreached (``run_campaign``'s ``top_up``).
TOP_UP_ROUNDS = 3


def model_config(caps: Capabilities, pages: int = 4, page_size: int = 4096, sockets: int = 2) -> Config:
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
    coverage: dict[tuple[str, str], int]
    divergence: str | None = None
    trace: tuple[Logged, ...] = ()
    rounds: int = 1  # Hypothesis runs: the first, then top-up rounds for coverage

    @property
    def ok(self) -> bool:
        return self.divergence is None


def run_campaign(factory: Callable[[], tuple[Provider, Provider]], cfg: Config, examples: int = 60,
                 steps: int = 40, seed: int | None = None, use_database: bool = True,
                 progress: Callable[[str], None] | None = None, name: str = "provider",
                 shrink: bool = True, targets: dict[str, set[str]] | None = None,
                 top_up: int = 0) -> CampaignResult:
    """Run the campaign. ``shrink=False`` stops at the first divergence as
    found (the mutation check measures time to kill, not the shortest trace).

    With ``targets`` (``outcome_targets``) and ``top_up`` > 0, while some
    outcome the model allows is neither reached nor UNREACHABLE, up to
    ``top_up`` more rounds of half the examples run under the next seeds:
    the rare error paths are random draws, and one run can miss one.
    """
    worlds: list[World] = []
    coverage: dict[tuple[str, str], int] = {}
    counted = {"steps": 0, "examples": 0, "rounds": 0}

    def keep(world: World) -> None:
        if worlds:  # fold the finished example's coverage in
            _fold(coverage, worlds[-1], counted)
        worlds[:] = [world]
        counted["examples"] += 1
        if progress and counted["examples"] % 10 == 0:
            progress(f"{name}: {counted['examples']} examples, {counted['steps']} steps")

    machine = make_machine(factory, cfg, keep)
    db = DirectoryBasedExampleDatabase(str(CACHE_DIR / "hypothesis")) if use_database else None
    phases = [p for p in Phase if shrink or p != Phase.shrink]

    def one_round(round_seed: int | None, n: int) -> str | None:
        run_settings = settings(max_examples=n, stateful_step_count=steps, deadline=None, database=db,
                                suppress_health_check=list(HealthCheck), print_blob=False, phases=phases)
        counted["rounds"] += 1
        saved_seed = hypothesis.core.global_force_seed
        hypothesis.core.global_force_seed = round_seed
        found = None
        try:
            run_state_machine_as_test(machine, settings=run_settings)
        except (Divergence, Flaky) as exc:
            found = str(exc).splitlines()[0]
        except Exception as exc:  # noqa: BLE001  anything else out of a step is reported, not hidden
            found = f"{type(exc).__name__}: {exc}".splitlines()[0]
        finally:
            hypothesis.core.global_force_seed = saved_seed
        if worlds:  # the round's last example; kept only for a divergence's trace
            _fold(coverage, worlds[-1], counted)
            if found is None:
                worlds.clear()
        return found

    start = time.perf_counter()
    divergence = one_round(seed, examples)
    for r in range(1, top_up + 1):
        if divergence or not targets or not uncovered(coverage, targets, skip=UNREACHABLE):
            break
        divergence = one_round(None if seed is None else seed + r, max(1, examples // 2))
    trace = tuple(worlds[-1].log) if worlds and divergence else ()
    return CampaignResult(name, counted["examples"], counted["steps"], time.perf_counter() - start, coverage,
                          divergence, trace, counted["rounds"])


def _fold(coverage: dict, world: World, counted: dict) -> None:
    for key, n in world.coverage.items():
        coverage[key] = coverage.get(key, 0) + n
    counted["steps"] += len(world.log)


def outcome_targets(cfg: Config) -> dict[str, set[str]]:
    """Every (transition, result) the model can give for this provider's
    capabilities (proved possible by z3 on the proofs' bounded sizes)."""
    from sanspi.model.constants import wsa_name
    from sanspi.proof.induction import PROOF_CONFIG
    from sanspi.proof.outcomes import possible_outcomes

    small = attrs.evolve(PROOF_CONFIG, has_cache=cfg.has_cache, has_rdma_read=cfg.has_rdma_read,
                         max_startups=min(cfg.max_startups, 2))
    return {name: {wsa_name(c) for c in codes} for name, codes in possible_outcomes(small).items()}


#: Why a (transition, result) the model allows cannot be reached by this campaign.
UNREACHABLE = {
    ("startup_ex", "WSASYSNOTREADY"): "campaigns run on a provider whose device is up (START-02 is a model test)",
    ("get_extension", "WSAEOPNOTSUPP"): "only for a provider without WSPRdmaRead or the cache callback",
}


def uncovered(coverage: dict[tuple[str, str], int], targets: dict[str, set[str]],
              skip: Collection[tuple[str, str]] = ()) -> list[str]:
    """The model's (transition, result) pairs the campaign never reached
    (but those in ``skip``)."""
    got: dict[str, set[str]] = {}
    for name, status in coverage:
        got.setdefault(name, set()).add(status.split(" ")[0])
    missing = []
    for name, results in targets.items():
        for r in sorted(results - got.get(name, set())):
            if (name, r) not in skip:
                missing.append(f"{name} -> {r}")
    return missing


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
