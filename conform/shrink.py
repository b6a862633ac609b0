"""Shrinking a divergence's trace by deleting steps, against fresh providers.

Hypothesis finds a divergence in seconds, but its own shrinking of a long
stateful example (every rule draws from ``st.data()``) can take minutes and
still leaves steps that do not matter. The trace the World logged is plain
data, so the campaign shrinks it directly: it deletes chunks of steps, then
single steps, replaying each candidate on a fresh pair of providers, and
keeps a deletion whenever the same divergence still occurs. It ends
1-minimal: deleting any one remaining step loses the divergence (or makes
the trace impossible, a step the environment could not take).

References to handles and descriptors name the model id a step issued
(``Ref('issued', 5)``). Deleting an earlier registration renumbers later
ids, so a replay maps each id to the step that first issued it and from
there to the id that step issues now; a reference to a deleted step's id
names nothing (a value no provider issued).
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

import attrs

from sanspi.conform.world import Divergence, Logged, Ref, World
from sanspi.model.state import Config

#: An id no registration gets: what a reference to a deleted step's id becomes.
UNISSUED = 10**9


@attrs.frozen
class Outcome:
    diverged: bool
    signature: tuple[str, str] | None  # (step name, message without numbers)
    message: str | None
    log: tuple[Logged, ...]  # the replay's steps, as run (ids as issued in this replay)


def signature(name: str, message: str) -> tuple[str, str]:
    """What makes two divergences "the same": the step and the message's
    words (numbers differ as steps go: byte offsets, ids)."""
    return name, re.sub(r"0x[0-9a-f]+|\d+", "#", message)


def _remap(value: Any, ids: dict[int, int]) -> Any:
    if isinstance(value, Ref):
        return attrs.evolve(value, rid=ids.get(value.rid, UNISSUED)) if value.how != "garbage" else value
    if isinstance(value, tuple):
        return tuple(_remap(v, ids) for v in value)
    return value


def replay(factory: Callable[[], tuple], cfg: Config, steps: list[Logged]) -> Outcome:
    """Run ``steps`` (as logged in the original run, ids as issued there) on
    fresh providers, renumbering references as the replay issues ids."""
    world = World(factory(), cfg)
    now: dict[int, int] = {}  # original id -> id issued in this replay
    try:
        for s in steps:
            args = {k: _remap(v, now) for k, v in s.args.items()}
            try:
                world.step(s.name, **args)
            except Divergence as exc:
                return Outcome(True, signature(s.name, str(exc)), str(exc), tuple(world.log))
            except RuntimeError:  # the environment could not take this step here
                return Outcome(False, None, None, tuple(world.log))
            if s.issued is not None and world.log[-1].issued is not None:
                now.setdefault(s.issued, world.log[-1].issued)
        return Outcome(False, None, None, tuple(world.log))
    finally:
        for p in world.providers:
            try:
                p.shutdown()
            except Exception:  # noqa: BLE001  a broken provider must not stop the shrink
                pass


@attrs.frozen
class Shrunk:
    steps: tuple[Logged, ...]  # as replayed: ids as the final replay issued them
    message: str
    replays: int
    seconds: float
    minimal: bool  # every single-step deletion was tried and lost the divergence


def shrink(factory: Callable[[], tuple], cfg: Config, trace: list[Logged], budget_s: float = 120.0) -> Shrunk | None:
    """The shortest trace this search finds that diverges as ``trace`` does;
    None if ``trace`` itself does not diverge on replay (a flaky provider)."""
    start = time.perf_counter()
    first = replay(factory, cfg, trace)
    if not first.diverged:
        return None
    target = first.signature
    steps = list(trace[:len(first.log)])  # nothing after the diverging step matters
    replays = 1

    def still(candidate: list[Logged]) -> bool:
        nonlocal replays
        replays += 1
        out = replay(factory, cfg, candidate)
        return out.diverged and out.signature == target

    def out_of_time() -> bool:
        return time.perf_counter() - start > budget_s

    # chunks first (halves, quarters, ...), later steps before earlier ones,
    # never the diverging step itself
    chunk = len(steps) // 2
    while chunk > 1 and not out_of_time():
        i = len(steps) - 1 - chunk
        while i >= 0 and not out_of_time():
            candidate = steps[:i] + steps[i + chunk:]
            if still(candidate):
                steps = candidate
            i -= chunk
        chunk //= 2
    # a last pass of single deletions until none helps: 1-minimal
    minimal = False
    while not out_of_time():
        removed = False
        for i in range(len(steps) - 2, -1, -1):
            if out_of_time():
                break
            candidate = steps[:i] + steps[i + 1:]
            if still(candidate):
                steps, removed = candidate, True
        if not removed and not out_of_time():
            minimal = True
            break
    final = replay(factory, cfg, steps)
    return Shrunk(final.log, final.message or "", replays + 1, time.perf_counter() - start, minimal)
