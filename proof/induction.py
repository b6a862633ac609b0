"""Inductive invariants: Init => Inv and Inv and T => Inv' for every
transition T, plus the step properties and the frame condition, each a z3
query over the model's own transition functions (see proof/symbolic.py).

The domains are bounded by ``PROOF_CONFIG`` (README: "What the proofs
claim"). Every query has a timeout; ``unknown`` is reported as a failure.
A counterexample is re-run on the concrete model and kept only with the
verdict of that re-run, so an encoding slip cannot pass as a finding.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

import attrs
import z3

from sanspi.model.invariants import STATE_INVARIANTS, STEP_PROPERTIES, frame_condition, violations
from sanspi.model.ops import CONCRETE
from sanspi.model.state import HOSTS, Config, State, init_state
from sanspi.model.transitions import TRANSITIONS, Step, Transition
from sanspi.proof.symbolic import Shape, Z3Ops, concrete, fresh_args, fresh_state, shapes

#: The bounded instance the proofs are about.
PROOF_CONFIG = Config(pages=3, slots=3, sockets=2, max_sge=2, max_startups=2)

PROVED, COUNTEREXAMPLE, UNKNOWN = "proved", "counterexample", "unknown"


@attrs.frozen
class Counterexample:
    transition: str
    shape: Shape
    pre: State
    args: Any
    step: Step  # the transition re-run on the concrete pre-state
    confirmed: bool  # the concrete re-run breaks the property too
    byte: tuple[int, int] | None = None  # (host, index) for the frame condition


@attrs.frozen
class Result:
    check: str  # an invariant, a step property, or "frame"
    transition: str  # a transition name, or "init"
    shape: str
    verdict: str
    seconds: float
    cex: Counterexample | None = None

    @property
    def ok(self) -> bool:
        return self.verdict == PROVED


def check_init(cfg: Config, invariants: dict) -> list[Result]:
    s0 = init_state(cfg)
    out = []
    for name, inv in invariants.items():
        t = time.perf_counter()
        ok = bool(inv(cfg, s0, CONCRETE))
        out.append(Result(name, "init", "", PROVED if ok else COUNTEREXAMPLE, time.perf_counter() - t))
    return out


def check_transition(cfg: Config, t: Transition, shape: Shape, invariants: dict, properties: dict,
                     timeout_ms: int) -> list[Result]:
    start = time.perf_counter()
    ops = Z3Ops(cfg.memsize)
    s = fresh_state(cfg, "s")
    a = fresh_args(t.args, shape, "a")
    step = t.fn(cfg, s, a, ops)
    i = z3.Int("byte")
    goals: dict[str, Any] = {}
    for name, inv in invariants.items():
        goals[name] = inv(cfg, step.next, ops)
    for name, prop in properties.items():
        goals[name] = prop(cfg, t.name, s, a, step, ops)
    goals["frame"] = ops.and_(*[frame_condition(cfg, t.name, s, a, step, ops, h, i) for h in range(HOSTS)])

    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(*[z3.BoolVal(x) if isinstance(x, bool) else x for x in
                 [inv(cfg, s, ops) for inv in invariants.values()] + [step.enabled]])
    label = shape.label()

    def negation(goal: Any) -> Any:
        return z3.BoolVal(not goal) if isinstance(goal, bool) else z3.Not(goal)

    # One query for all goals first: in the common case every goal holds.
    verdict = solver.check(z3.Or(*[negation(g) for g in goals.values()]))
    if verdict == z3.unsat:
        elapsed = time.perf_counter() - start
        return [Result(n, t.name, label, PROVED, elapsed / len(goals)) for n in goals]

    results = []
    for name, goal in goals.items():
        q = time.perf_counter()
        verdict = solver.check(negation(goal))
        took = time.perf_counter() - q
        if verdict == z3.unsat:
            results.append(Result(name, t.name, label, PROVED, took))
        elif verdict == z3.sat:
            cex = _counterexample(cfg, t, shape, s, a, i, solver.model(), name, invariants, properties)
            results.append(Result(name, t.name, label, COUNTEREXAMPLE, took, cex))
        else:
            results.append(Result(name, t.name, label, UNKNOWN, took))
    return results


def _counterexample(cfg: Config, t: Transition, shape: Shape, s: State, a: Any, i: Any, model: z3.ModelRef,
                    broken: str, invariants: dict, properties: dict) -> Counterexample:
    pre = concrete(model, s, cfg.memsize)
    args = concrete(model, a, cfg.memsize)
    step = t.fn(cfg, pre, args, CONCRETE)
    confirmed = bool(step.enabled) and broken in violations(cfg, t.name, pre, args, step, invariants, properties)
    byte = None
    if broken == "frame":
        index = model.eval(i, model_completion=True).as_long()
        byte = next(((h, index) for h in range(HOSTS)
                     if 0 <= index < cfg.memsize and pre.hosts[h].mem[index] != step.next.hosts[h].mem[index]),
                    None)
    return Counterexample(t.name, shape, pre, args, step, confirmed, byte)


def instances(cfg: Config, transitions: dict[str, Transition]) -> Iterable[tuple[Transition, Shape]]:
    for t in transitions.values():
        for shape in shapes(t.args, cfg):
            yield t, shape


def prove(cfg: Config = PROOF_CONFIG, transitions: dict[str, Transition] | None = None,
          invariants: dict | None = None, properties: dict | None = None, timeout_ms: int = 20_000,
          progress: Callable[[str], None] | None = None) -> list[Result]:
    transitions = TRANSITIONS if transitions is None else transitions
    invariants = STATE_INVARIANTS if invariants is None else invariants
    properties = STEP_PROPERTIES if properties is None else properties
    results = check_init(cfg, invariants)
    for t, shape in instances(cfg, transitions):
        if progress:
            progress(f"{t.name} {shape.label()}")
        results += check_transition(cfg, t, shape, invariants, properties, timeout_ms)
    return results
