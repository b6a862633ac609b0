"""Which outcomes each transition can give: for every transition, every
reason (model/reasons.py: the clause and check that decided it) and every
WSA code, z3 is asked whether some state satisfying the invariants has an
enabled step ending that way. The conformance report measures its coverage
against this set, so "never seen" means reachable but not reached, and each
refusal clause counts on its own even where several share a code."""

from __future__ import annotations

import z3

from sanspi.model.invariants import STATE_INVARIANTS
from sanspi.model.reasons import REASONS
from sanspi.model.state import Config
from sanspi.model.transitions import TRANSITIONS
from sanspi.proof.induction import instances
from sanspi.proof.symbolic import Z3Ops, fresh_args, fresh_state


def _term(x):
    return z3.IntVal(x) if isinstance(x, int) and not isinstance(x, bool) else x


def possible_outcomes(cfg: Config, timeout_ms: int = 10_000) -> dict[str, set[tuple[int, int]]]:
    """transition -> {(status, reason code)} that some reachable-by-invariant
    state allows."""
    ops = Z3Ops(cfg.memsize)
    out: dict[str, set[tuple[int, int]]] = {name: set() for name in TRANSITIONS}
    for t, shape in instances(cfg, TRANSITIONS):
        s = fresh_state(cfg, "s")
        a = fresh_args(t.args, shape, "a")
        step = t.fn(cfg, s, a, ops)
        solver = z3.Solver()
        solver.set("timeout", timeout_ms)
        for x in [inv(cfg, s, ops) for inv in STATE_INVARIANTS.values()] + [step.enabled]:
            solver.add(z3.BoolVal(x) if isinstance(x, bool) else x)
        status, why = _term(step.status), _term(step.why)
        for reason in REASONS:
            solver.push()
            solver.add(why == reason.code)
            # every status this reason comes with: ask, take the model's, exclude it, ask again
            while solver.check() == z3.sat:
                code = solver.model().eval(status, model_completion=True).as_long()
                out[t.name].add((code, reason.code))
                solver.add(status != code)
            solver.pop()
    return out
