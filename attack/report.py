"""The attack's report: Markdown for people, JSON for tools (as conform's);
the last line of the Markdown states the totals."""

from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path

import attrs

from sanspi.attack.campaign import CLASSES, AttackResult
from sanspi.conform import agent


def environment() -> dict[str, str]:
    """Where the run was, as conform's report says it (conform.report is not
    imported: it brings Hypothesis)."""
    return {"machine": platform.node(), **agent.environment(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def totals(result: AttackResult) -> str:
    return (f"Total: {result.attempts} attempts, {result.successes} successes, "
            f"{result.changed} with changed bytes" + ("" if result.ok else f"; {len(result.findings)} finding(s)"
                                                      + (f"; {result.stopped}" if result.stopped else "")))


def write(result: AttackResult, out: Path, settings: dict, hosts: dict[str, str] | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    env = {**environment(), **(hosts or {})}
    indexes = len(result.keys_tried)
    full = sum(1 for n in result.keys_tried.values() if n >= 255)
    data = {
        "provider": result.provider, "topology": result.topology, **env, **settings,
        "attempts": result.attempts, "successes": result.successes, "changed": result.changed,
        "sessions": result.sessions, "seconds": round(result.seconds, 1), "connection_checks": result.checks,
        "classes": {c: {"what": CLASSES.get(c, "the descriptor the victim gave this peer, in range: must work"),
                        **attrs.asdict(r)} for c, r in result.rows.items()},
        "key_indexes_tried": {f"{i:#x}": n for i, n in sorted(result.keys_tried.items())},
        "findings": [attrs.asdict(f) for f in result.findings],
        "stopped": result.stopped, "ok": result.ok,
    }
    (out / "attack.json").write_text(json.dumps(data, indent=1))
    rate = result.attempts / result.seconds if result.seconds else 0.0
    lines = [f"# sanspi attack: {result.provider}, {result.topology}", "",
             f"- machine {env['machine']}; kernel {env['kernel']}; device {env['device']}; {env['date']}",
             f"- {result.attempts} attempts (asked {result.asked}, seed {result.seed}) in {result.sessions} sessions, "
             f"{result.seconds:.1f} s ({rate:.1f} attempts/s); {result.checks} connection comparisons; "
             f"settings {settings}",
             f"- keys of {indexes} indexes tried, {full} of them all 256 (or all but the issued one)", "",
             "| class | what | attempts | refused | allowed by the model | zero-byte, done | successes | changed bytes |",
             "|---|---|---|---|---|---|---|---|"]
    for c, r in result.rows.items():
        what = CLASSES.get(c, "not an attack: the descriptor the victim gave this peer, in range (must work)")
        lines.append(f"| {c} | {what} | {r.attempts} | {r.refused} | {r.allowed} | {r.done} | {r.successes} "
                     f"| {r.changed} |")
    if result.findings:
        lines += ["", "## Findings", ""]
        for i, f in enumerate(result.findings[:20], 1):
            lines += [f"{i}. **{f.kind}** ({f.cls or 'session'}): {f.what}", f"   {f.message}"]
            if f.trace:
                lines += ["   ```"] + [f"   {t}" for t in f.trace] + ["   ```"]
        if len(result.findings) > 20:
            lines.append(f"... and {len(result.findings) - 20} more in attack.json")
    lines += ["", totals(result)]
    (out / "attack.md").write_text("\n".join(lines) + "\n")
    return [out / "attack.md", out / "attack.json"]

