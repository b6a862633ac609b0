"""Bounded model checking: every sequence of at most K transitions from
Init, searched by z3 for a step that breaks an invariant, a step property or
the frame condition. The same transition functions, called K times.

Each step has one named boolean per transition instance ("which transition
fired", as mypyvy's assert_any_transition); a violation comes back as the
list of fired transitions with their concrete arguments, and is confirmed by
re-running it on the concrete model (``sanspi.proof.trace``).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import attrs
import z3

from sanspi.model.invariants import STATE_INVARIANTS, STEP_PROPERTIES, frame_condition
from sanspi.model.state import HOSTS, Config, init_state
from sanspi.model.transitions import TRANSITIONS, Transition
from sanspi.proof.symbolic import Z3Ops, concrete, equal, fresh_args, fresh_state, lift_state
from sanspi.proof.induction import instances
from sanspi.model.trace import Trace, TraceStep, replay


#: BMC explores from Init, so its bound grows with every field: it runs on a
#: smaller instance than the induction (README: "What the proofs claim").
BMC_CONFIG = Config(pages=2, slots=2, sockets=1, max_sge=1, max_startups=1)


@attrs.frozen
class BmcResult:
    depth: int  # the bound searched
    verdict: str  # "none found", "counterexample", "unknown"
    seconds: float
    trace: Trace | None = None
    per_depth: tuple[float, ...] = ()  # cumulative seconds after each depth


def _as_bool(x: Any) -> Any:
    return z3.BoolVal(x) if isinstance(x, bool) else x


def _depths(k: int, cfg: Config, transitions: dict[str, Transition], solver: z3.Solver):
    """Unroll up to ``k`` steps from Init, one depth at a time. Each depth
    adds to ``solver`` that exactly one transition instance fires and yields
    (depth, pre-state, next state, [(fired, transition, args, step), ...])."""
    ops = Z3Ops(cfg.memsize)
    state = lift_state(init_state(cfg))
    for j in range(k):
        nxt = fresh_state(cfg, f"s{j + 1}")
        fired = []
        for n, (t, shape) in enumerate(instances(cfg, transitions)):
            a = fresh_args(t.args, shape, f"a{j}.{n}")
            step = t.fn(cfg, state, a, ops)
            f = z3.Bool(f"fired{j}.{n}.{t.name}")
            solver.add(z3.Implies(f, z3.And(_as_bool(step.enabled), equal(nxt, step.next))))
            fired.append((f, t, a, step))
        solver.add(z3.PbEq([(f, 1) for f, _, _, _ in fired], 1))
        yield j, state, nxt, fired
        state = nxt


def bmc(k: int, cfg: Config = BMC_CONFIG, transitions: dict[str, Transition] | None = None,
        invariants: dict | None = None, properties: dict | None = None, timeout_ms: int = 120_000,
        progress: Callable[[str], None] | None = None) -> BmcResult:
    transitions = TRANSITIONS if transitions is None else transitions
    invariants = STATE_INVARIANTS if invariants is None else invariants
    properties = STEP_PROPERTIES if properties is None else properties
    start = time.perf_counter()
    ops = Z3Ops(cfg.memsize)
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    fired_at: list[list[tuple[Any, Transition, Any, Any]]] = []
    per_depth = []
    mark = start
    for j, state, nxt, fired in _depths(k, cfg, transitions, solver):
        broken = []
        for n, (f, t, a, step) in enumerate(fired):
            i = z3.Int(f"byte{j}.{n}")
            # state invariants are checked once per depth, on ``nxt`` below
            checks = [p(cfg, t.name, state, a, step, ops) for p in properties.values()]
            checks += [frame_condition(cfg, t.name, state, a, step, ops, h, i) for h in range(HOSTS)]
            broken.append(z3.And(f, z3.Not(z3.And(*[_as_bool(c) for c in checks]))))
        fired_at.append(fired)
        holds = z3.And(*[_as_bool(inv(cfg, nxt, ops)) for inv in invariants.values()])
        broken.append(z3.Not(holds))
        encoded = time.perf_counter()
        verdict = solver.check(z3.Or(*broken))
        if progress:
            progress(f"depth {j + 1}: encoded in {encoded - mark:.1f}s, solved in {time.perf_counter() - encoded:.1f}s")
        mark = time.perf_counter()
        per_depth.append(time.perf_counter() - start)
        if verdict == z3.sat:
            trace = _trace(cfg, solver.model(), fired_at, transitions, invariants, properties)
            return BmcResult(k, "counterexample", time.perf_counter() - start, trace, tuple(per_depth))
        if verdict != z3.unsat:
            return BmcResult(k, "unknown", time.perf_counter() - start, None, tuple(per_depth))
        # No violation within j + 1 steps: every state reached so far keeps
        # the invariants, so they hold at depth j + 1 as a proven lemma. It
        # keeps the search to paths whose first violation is still ahead.
        solver.add(holds)
    return BmcResult(k, "none found", time.perf_counter() - start, None, tuple(per_depth))


def reach(k: int, transition: str, status: int, cfg: Config = BMC_CONFIG,
          transitions: dict[str, Transition] | None = None, timeout_ms: int = 120_000) -> BmcResult:
    """A sequence of exactly ``k`` steps from Init whose last step is
    ``transition`` answering ``status``: BMC asked for a witness instead of a
    violation (one query, at depth ``k``). The verdict is "reached" (with the
    trace, replayed on the concrete model), "none found" or "unknown"."""
    transitions = TRANSITIONS if transitions is None else transitions
    start = time.perf_counter()
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    fired_at = [fired for _, _, _, fired in _depths(k, cfg, transitions, solver)]
    goal = z3.Or(*[z3.And(f, _as_bool(step.status == status))
                   for f, t, _, step in fired_at[-1] if t.name == transition])
    verdict = solver.check(goal)
    if verdict == z3.sat:
        trace = _trace(cfg, solver.model(), fired_at, transitions, None, None)
        return BmcResult(k, "reached", time.perf_counter() - start, trace)
    return BmcResult(k, "none found" if verdict == z3.unsat else "unknown", time.perf_counter() - start)


def _trace(cfg: Config, model: z3.ModelRef, fired_at, transitions, invariants, properties) -> Trace:
    steps = []
    for fired in fired_at:
        for f, t, a, _ in fired:
            if z3.is_true(model.eval(f, model_completion=True)):
                steps.append(TraceStep(t.name, concrete(model, a, cfg.memsize)))
                break
    return replay(Trace(cfg, tuple(steps)), transitions, invariants, properties)
