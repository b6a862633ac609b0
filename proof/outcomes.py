"""Which results each transition can give: for every transition and every
WSA code, z3 is asked whether some state satisfying the invariants has an
enabled step with that status. The conformance report measures its coverage
against this set, so "never seen" means reachable but not reached."""

from __future__ import annotations

import z3

from sanspi.model.constants import WSA_NAMES
from sanspi.model.invariants import STATE_INVARIANTS
from sanspi.model.state import Config
from sanspi.model.transitions import TRANSITIONS
from sanspi.proof.induction import instances
from sanspi.proof.symbolic import Z3Ops, fresh_args, fresh_state


def possible_outcomes(cfg: Config, timeout_ms: int = 10_000) -> dict[str, set[int]]:
    ops = Z3Ops(cfg.memsize)
    out: dict[str, set[int]] = {name: set() for name in TRANSITIONS}
    for t, shape in instances(cfg, TRANSITIONS):
        s = fresh_state(cfg, "s")
        a = fresh_args(t.args, shape, "a")
        step = t.fn(cfg, s, a, ops)
        solver = z3.Solver()
        solver.set("timeout", timeout_ms)
        for x in [inv(cfg, s, ops) for inv in STATE_INVARIANTS.values()] + [step.enabled]:
            solver.add(z3.BoolVal(x) if isinstance(x, bool) else x)
        for code in WSA_NAMES:
            if code in out[t.name]:
                continue
            if isinstance(step.status, int):
                if step.status == code and solver.check() == z3.sat:
                    out[t.name].add(code)
            elif solver.check(step.status == code) == z3.sat:
                out[t.name].add(code)
    return out
