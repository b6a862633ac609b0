"""``sanspi spec``: the traceability table, with every gap flagged."""

from __future__ import annotations

import argparse
from pathlib import Path

from sanspi.cli import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spec", help="print the clause -> model -> invariant -> test table and flag gaps")
    p.add_argument("--tests", default="tests", help="folder of the tests to read markers from (default: tests)")
    p.add_argument("--verbose", "-v", action="store_true", help="list every test, not the first few")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from sanspi.spec.trace import build, render

    tests = Path(args.tests)
    if not tests.is_dir():
        raise UsageError(f"no tests folder at {tests} (run from the repository root or pass --tests)")
    trace = build(tests)
    print(render(trace, args.verbose))
    return 1 if trace.problems else 0
