"""Inductive invariants: Init => Inv and Inv and T => Inv' for every
transition T, plus the step properties and the frame condition, each a z3
query over the model's own transition functions (see proof/symbolic.py).

Two backends encode the state: ``BOUNDED``, the sizes of ``PROOF_CONFIG``
(tuples, every collection unrolled; README: "What the proofs claim"), and
``UNBOUNDED``, any number of registrations, connections and pages
(``proof/unbounded.py``: z3 arrays, lambdas and quantifiers). Both run the
same transitions and properties. Every query has a timeout; ``unknown`` is
reported as a failure. A counterexample is re-run on the concrete model and
kept only with the verdict of that re-run, so an encoding slip cannot pass
as a finding.
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
from sanspi.proof import symbolic, unbounded
from sanspi.proof.symbolic import Shape, Z3Ops, concrete, fresh_args, shapes

#: The bounded instance the proofs are about.
PROOF_CONFIG = Config(pages=3, slots=3, sockets=2, max_sge=2, max_startups=2)

#: The unbounded proof's capabilities: the providers' defaults (max_sge 4,
#: cache, RDMA read); its numbers of pages, registrations and connections
#: are left to z3 (``proof/unbounded.py``).
UNBOUNDED_CONFIG = Config()

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
    config: Config | None = None  # the sizes of the pre-state (the unbounded proof picks them)


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


class Bounded:
    """The instance of ``cfg``'s sizes: tuples, collections unrolled."""

    name = "bounded"

    def config(self, cfg: Config) -> Config:
        return cfg

    def ops(self, cfg: Config) -> Z3Ops:
        return Z3Ops(cfg.memsize)

    def state(self, cfg: Config, tag: str) -> State:
        return symbolic.fresh_state(cfg, tag)

    def assumptions(self, cfg: Config, ops: Z3Ops) -> list[Any]:
        return []

    def check_init(self, cfg: Config, invariants: dict, timeout_ms: int) -> list[Result]:
        s0 = init_state(cfg)
        out = []
        for name, inv in invariants.items():
            t = time.perf_counter()
            ok = bool(inv(cfg, s0, CONCRETE))
            out.append(Result(name, "init", "", PROVED if ok else COUNTEREXAMPLE, time.perf_counter() - t))
        return out

    def small_configs(self, cfg: Config) -> list[Config]:
        """Where to look for a counterexample the query itself cannot give."""
        return []

    #: z3's resource limit on the query that asks for every goal at once (0: none)
    first_query_rlimit = 0


class Unbounded(Bounded):
    """Any number of registrations a host, connections and pages.

    z3 proves these queries (unsat) quickly but seldom builds a model of
    quantified assumptions over arithmetic, so a check that is not proved
    looks for its counterexample at small sizes with the bounded encoding
    (quantifier-free); one found is a counterexample at that size, replayed
    like any other."""

    name = "unbounded"

    def config(self, cfg: Config) -> Config:
        return unbounded.sized(cfg)

    def ops(self, cfg: Config) -> Z3Ops:
        return unbounded.QuantOps(cfg.memsize)

    def state(self, cfg: Config, tag: str) -> State:
        return unbounded.fresh_state(cfg, tag)

    def assumptions(self, cfg: Config, ops: Z3Ops) -> list[Any]:
        return [n >= 1 for n in unbounded.sizes(cfg)] + ops.axioms

    def check_init(self, cfg: Config, invariants: dict, timeout_ms: int) -> list[Result]:
        out = []
        for name, inv in invariants.items():
            t = time.perf_counter()
            ops = self.ops(cfg)
            holds = inv(cfg, unbounded.init(cfg), ops)
            solver = z3.Solver()
            solver.set("timeout", timeout_ms)
            solver.add(*self.assumptions(cfg, ops))
            verdict = solver.check(_negation(holds))
            verdict = PROVED if verdict == z3.unsat else UNKNOWN
            if verdict != PROVED and any(not inv(small, init_state(small), CONCRETE)
                                         for small in self.small_configs(cfg)):
                verdict = COUNTEREXAMPLE
            out.append(Result(name, "init", "", verdict, time.perf_counter() - t))
        return out

    def small_configs(self, cfg: Config) -> list[Config]:
        return [attrs.evolve(cfg, pages=n, slots=n, sockets=n) for n in unbounded.SMALL_SIZES]

    # The heaviest instance proves within 0.82 million units of z3's
    # resource counter, while a goal that fails keeps z3 building a model
    # until stopped. The counter, unlike a timeout, does not depend on the
    # machine's load; running out here only means asking goal by goal.
    first_query_rlimit = 2_000_000


BOUNDED, UNBOUNDED = Bounded(), Unbounded()


def _negation(goal: Any) -> Any:
    return z3.BoolVal(not goal) if isinstance(goal, bool) else z3.Not(goal)


@attrs.define
class _Encoding:
    """One transition instance over a fresh symbolic state: the solver holds
    the invariants, the step's guard and the backend's assumptions; ``goals``
    are the checks on the step (every invariant after it, every step
    property, the frame condition at a symbolic byte)."""

    cfg: Config
    s: State
    a: Any
    i: Any
    goals: dict[str, Any]
    solver: z3.Solver

    @classmethod
    def build(cls, cfg: Config, t: Transition, shape: Shape, invariants: dict, properties: dict,
              backend: Bounded, timeout_ms: int) -> "_Encoding":
        ops = backend.ops(cfg)
        s = backend.state(cfg, "s")
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
        solver.add(*backend.assumptions(cfg, ops))  # after every term is built: they include find()'s definitions
        return cls(cfg, s, a, i, goals, solver)

    def broken(self, names: Iterable[str]) -> Any:
        """Some goal among ``names`` fails."""
        return z3.Or(*[_negation(self.goals[n]) for n in names])


def check_transition(cfg: Config, t: Transition, shape: Shape, invariants: dict, properties: dict,
                     timeout_ms: int, backend: Bounded = BOUNDED) -> list[Result]:
    start = time.perf_counter()
    enc = _Encoding.build(cfg, t, shape, invariants, properties, backend, timeout_ms)
    label = shape.label()
    # One query for all goals first: in the common case every goal holds.
    enc.solver.set("rlimit", backend.first_query_rlimit)
    verdict = enc.solver.check(enc.broken(enc.goals))
    enc.solver.set("rlimit", 0)
    if verdict == z3.unsat:
        elapsed = time.perf_counter() - start
        return [Result(n, t.name, label, PROVED, elapsed / len(enc.goals)) for n in enc.goals]

    # Counterexamples at small sizes, smallest first; after each size that
    # refutes a goal, the goals left most likely all hold: one query for them.
    found: dict[str, Result] = {}
    rest = list(enc.goals)
    for small in backend.small_configs(cfg):
        q = time.perf_counter()
        at = _Encoding.build(small, t, shape, invariants, properties, BOUNDED, timeout_ms)
        if at.solver.check(at.broken(rest)) != z3.sat:
            continue
        for name in rest:
            if at.solver.check(at.broken([name])) == z3.sat:
                cex = _counterexample(at, t, shape, at.solver.model(), name, invariants, properties)
                found[name] = Result(name, t.name, label, COUNTEREXAMPLE, time.perf_counter() - q, cex)
        rest = [n for n in rest if n not in found]
        q = time.perf_counter()
        if not rest or enc.solver.check(enc.broken(rest)) == z3.unsat:
            found.update({n: Result(n, t.name, label, PROVED, (time.perf_counter() - q) / len(rest)) for n in rest})
            break

    results = []
    for name in enc.goals:
        if name in found:
            results.append(found[name])
            continue
        q = time.perf_counter()
        verdict = enc.solver.check(enc.broken([name]))
        took = time.perf_counter() - q
        if verdict == z3.unsat:
            results.append(Result(name, t.name, label, PROVED, took))
        elif verdict == z3.sat and backend is BOUNDED:
            cex = _counterexample(enc, t, shape, enc.solver.model(), name, invariants, properties)
            results.append(Result(name, t.name, label, COUNTEREXAMPLE, took, cex))
        else:
            results.append(Result(name, t.name, label, UNKNOWN, took))
    return results


def _counterexample(enc: _Encoding, t: Transition, shape: Shape, model: z3.ModelRef, broken: str,
                    invariants: dict, properties: dict) -> Counterexample:
    """The model of a bounded encoding as a concrete pre-state and step, re-run on the concrete model."""
    cfg = enc.cfg
    pre = concrete(model, enc.s, cfg.memsize)
    args = concrete(model, enc.a, cfg.memsize)
    step = t.fn(cfg, pre, args, CONCRETE)
    confirmed = bool(step.enabled) and broken in violations(cfg, t.name, pre, args, step, invariants, properties)
    byte = None
    if broken == "frame":
        index = model.eval(enc.i, model_completion=True).as_long()
        byte = next(((h, index) for h in range(HOSTS)
                     if 0 <= index < cfg.memsize and pre.hosts[h].mem[index] != step.next.hosts[h].mem[index]),
                    None)
    return Counterexample(t.name, shape, pre, args, step, confirmed, byte, cfg)


def instances(cfg: Config, transitions: dict[str, Transition]) -> Iterable[tuple[Transition, Shape]]:
    for t in transitions.values():
        for shape in shapes(t.args, cfg):
            yield t, shape


def prove(cfg: Config = PROOF_CONFIG, transitions: dict[str, Transition] | None = None,
          invariants: dict | None = None, properties: dict | None = None, timeout_ms: int = 20_000,
          progress: Callable[[str], None] | None = None, backend: Bounded = BOUNDED) -> list[Result]:
    """Init => Inv and Inv and T => Inv' for every transition instance. With
    ``UNBOUNDED`` only ``cfg``'s capabilities and max_sge count; its sizes
    are any."""
    transitions = TRANSITIONS if transitions is None else transitions
    invariants = STATE_INVARIANTS if invariants is None else invariants
    properties = STEP_PROPERTIES if properties is None else properties
    cfg = backend.config(cfg)
    results = backend.check_init(cfg, invariants, timeout_ms)
    for t, shape in instances(cfg, transitions):
        if progress:
            progress(f"{t.name} {shape.label()}")
        results += check_transition(cfg, t, shape, invariants, properties, timeout_ms, backend)
    return results
