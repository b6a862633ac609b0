"""Conformance throughput: lockstep steps a second on a provider pair, and
the share of a step spent in the model (``World.model_seconds`` against
``World.step_seconds``), the campaign's own state machine driving it."""

from __future__ import annotations

import time

from hypothesis import HealthCheck

from sanspi.conform.campaign import model_config
from sanspi.conform.machine import make_machine
from sanspi.conform.providers import load_factory, probe
from sanspi.conform.world import World
from sanspi.seeded import run_seeded


def throughput(provider: str, examples: int, steps: int, seed: int = 1, pages: int = 4) -> dict:
    """Run ``examples`` lockstep examples of at most ``steps`` steps on
    ``provider`` (sim, rxe, ...), without the example database so that a
    run measures what it says. A divergence is an error here: the figure
    of a provider that does not conform means nothing."""
    factory = load_factory(provider, pages)
    probed = probe(factory)
    cfg = model_config(probed.capabilities, pages=pages)
    worlds: list[World] = []
    machine = make_machine(factory, cfg, worlds.append)
    start = time.perf_counter()
    run_seeded(machine, seed, max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
               suppress_health_check=list(HealthCheck), print_blob=False)
    wall = time.perf_counter() - start
    nsteps = sum(len(w.log) for w in worlds)
    step_s = sum(w.step_seconds for w in worlds)
    model_s = sum(w.model_seconds for w in worlds)
    if nsteps == 0 or step_s <= 0:
        raise RuntimeError(f"the campaign on {provider} ran no step")
    return {"provider": provider, "name": probed.name, "examples": len(worlds), "steps": nsteps, "seed": seed,
            "wall_s": wall, "step_s": step_s, "model_s": model_s,
            "steps_per_s": nsteps / wall, "model_share": model_s / step_s}
