"""``sanspi nic``: the NIC facts the verbs provider rests on, checked on rxe
by the lockstep of nic/lockstep.py; known deviations are reported by name."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


from sanspi.cli import UsageError, clear_progress, progress


#: The ``ci`` budget: examples of at most this many steps, per round.
CI_EXAMPLES, CI_STEPS = 30, 15


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nic", help="check rxe's access checks against a small model of the verbs access check")
    p.add_argument("--examples", type=int, default=CI_EXAMPLES, help=f"examples a round (default {CI_EXAMPLES})")
    p.add_argument("--steps", type=int, default=CI_STEPS, help=f"steps an example at most (default {CI_STEPS})")
    p.add_argument("--seed", type=int, default=0, help="Hypothesis's seed (default 0: repeatable)")
    p.add_argument("--out", default="reports/nic", help="folder for nic.md and nic.json")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.examples < 1 or args.steps < 1:
        raise UsageError("--examples and --steps must be at least 1")
    if not os.environ.get("SANSPI_LAB_TOPOLOGY") and not any(Path("/sys/class/infiniband").glob("*")):
        from sanspi.cli import main as sanspi_main

        print("sanspi nic: running inside the lab (sanspi lab run)", file=sys.stderr)
        out = str(Path(args.out).resolve())
        return sanspi_main(["lab", "run", "--rwdir", out, "--", "sanspi", "nic", "--examples", str(args.examples),
                            "--steps", str(args.steps), "--seed", str(args.seed), "--out", out])
    from sanspi.nic.lockstep import run_nic
    from sanspi.nic.rxe import NicError, RxeNic

    try:
        result = run_nic(RxeNic, args.examples, args.steps, args.seed, progress=progress)
    except NicError as exc:
        clear_progress()
        print(f"sanspi nic: {exc}", file=sys.stderr)
        return 1
    clear_progress()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = render(result, vars(args))
    (out / "nic.md").write_text(text)
    (out / "nic.json").write_text(json.dumps({
        "examples": result.examples, "steps": result.steps, "seconds": round(result.seconds, 1), "ok": result.ok,
        "found": [{"deviation": f.deviation, "what": f.what, "divergence": f.divergence,
                   "trace": [str(s) for s in f.trace]} for f in result.found],
        "unknown": result.unknown, "unknown_trace": [str(s) for s in result.unknown_trace],
        "missing": list(result.missing), "settings": {k: v for k, v in vars(args).items() if k != "run"},
    }, indent=1))
    print(f"written: {out / 'nic.md'}, {out / 'nic.json'}")
    print(text, end="")
    return 0 if result.ok else 1


def render(result, settings: dict) -> str:
    from sanspi.conform.report import environment

    env = environment()
    lines = ["# sanspi nic: rxe against the verbs access check", "",
             f"- kernel {env['kernel']}, device {env['device']}, {env['date']}; "
             f"{result.examples} examples (shrinking included), {result.steps} steps, {result.seconds:.1f} s; "
             f"examples {settings.get('examples')} of up to {settings.get('steps')} steps a round, "
             f"seed {settings.get('seed')}", ""]
    for f in result.found:
        lines += [f"## Known deviation `{f.deviation}`", "", f.what, "", f"Found: {f.divergence}", "",
                  "Minimal trace:", "", "```"] + [f"{i}. {s}" for i, s in enumerate(f.trace, 1)] + ["```", ""]
    if result.unknown:
        lines += ["## UNKNOWN DIVERGENCE", "", result.unknown, "", "```"] \
            + [f"{i}. {s}" for i, s in enumerate(result.unknown_trace, 1)] + ["```", ""]
    if result.missing:
        lines += [f"Known deviation(s) NOT found: {', '.join(result.missing)} (has the kernel changed? "
                  f"lab/RXE-FACTS.md)", ""]
    found = ", ".join(f.deviation for f in result.found) or "none"
    lines.append(f"Result: {'as expected' if result.ok else 'FAILED'}; known deviations found: {found}"
                 + (f"; unknown divergence: {result.unknown}" if result.unknown else ""))
    return "\n".join(lines) + "\n"

