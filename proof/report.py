"""Text for the prover's results: the invariant x transition table and
counterexamples in the style of mypyvy's traces (true facts, then changes)."""

from __future__ import annotations

from sanspi.model.constants import wsa_name
from sanspi.model.trace import TraceStep, call_text, diff, facts
from sanspi.proof.induction import PROVED, Result

MARK = {"proved": "ok", "counterexample": "CEX", "unknown": "??"}


def render_table(results: list[Result]) -> str:
    """Rows: checks; columns: transitions (numbered, legend below)."""
    checks = list(dict.fromkeys(r.check for r in results))
    transitions = list(dict.fromkeys(r.transition for r in results))
    worst: dict[tuple[str, str], str] = {}
    order = {"proved": 0, "counterexample": 2, "unknown": 1}
    for r in results:
        key = (r.check, r.transition)
        if key not in worst or order[r.verdict] > order[worst[key]]:
            worst[key] = r.verdict
    width = max(len(c) for c in checks)
    head = " ".join(f"{n:>3}" for n in range(len(transitions)))
    lines = [f"{'check':<{width}} {head}"]
    for c in checks:
        cells = " ".join(f"{MARK[worst[(c, t)]] if (c, t) in worst else '-':>3}" for t in transitions)
        lines.append(f"{c:<{width}} {cells}")
    lines.append("")
    lines.append("  ".join(f"{n}={t}" for n, t in enumerate(transitions)))
    lines.append("ok = proved, CEX = counterexample, ?? = unknown (a failure), - = not applicable")
    return "\n".join(lines)


def render_counterexample(r: Result) -> str:
    cex = r.cex
    assert cex is not None and r.verdict != PROVED
    st = TraceStep(cex.transition, cex.args)
    status = "" if not cex.step.enabled else f" -> {wsa_name(cex.step.status)}, result {cex.step.result}"
    head = f"counterexample to {r.check} on {cex.transition} ({r.shape}):"
    if cex.config is not None:
        c = cex.config
        head = head[:-1] + f", at {c.pages} page(s), {c.slots} registration(s) a host, {c.sockets} connection(s):"
    lines = [head, "pre-state (satisfies every invariant):"]
    lines += [f"  {f}" for f in facts(cex.pre)]
    lines.append(f"step: {call_text(st)}{status}")
    lines += [f"  {d}" for d in diff(cex.pre, cex.step.next)]
    if cex.byte:
        h, i = cex.byte
        lines.append(f"  byte {i} of host{h} changed outside every range the step may write")
    lines.append("confirmed on the concrete model" if cex.confirmed
                 else "NOT confirmed on the concrete model: the z3 encoding and the model disagree")
    return "\n".join(lines)
