"""Traceability: clause -> model rules -> invariants -> tests.

Model rules and invariants are read from the model itself (the TRANSITIONS
table and the properties' docstrings); tests from their
``@pytest.mark.clause(...)`` markers, found by reading the test files.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

from sanspi.spec.clauses import Clause, check_files, clause_ids, load_index

# ``@pytest.mark.clause(...)``, or ``@clause(...)`` where a module aliases
# ``clause = pytest.mark.clause``
MARKER = re.compile(r"(?:mark\.clause|^\s*@clause)\(([^)]*)\)", re.MULTILINE)
TEST_DEF = re.compile(r"^\s*(?:async\s+)?def\s+(test_\w+)|^class\s+(Test\w+)", re.MULTILINE)


@attrs.frozen
class Row:
    clause: Clause
    rules: tuple[str, ...]
    invariants: tuple[str, ...]
    tests: tuple[str, ...]


def model_rules() -> dict[str, list[str]]:
    from sanspi.model.transitions import TRANSITIONS

    found: dict[str, list[str]] = {}
    for t in TRANSITIONS.values():
        for cid in t.clauses:
            found.setdefault(cid, []).append(t.name)
    return found


def model_invariants() -> dict[str, list[str]]:
    from sanspi.model.invariants import STATE_INVARIANTS, STEP_PROPERTIES

    found: dict[str, list[str]] = {}
    for name, fn in {**STATE_INVARIANTS, **STEP_PROPERTIES}.items():
        for cid in clause_ids(fn.__doc__):
            found.setdefault(cid, []).append(name)
    return found


def marked_tests(tests_dir: Path) -> dict[str, list[str]]:
    """clause -> tests marked with it. A marker applies to the next test
    function or class defined after it in the file."""
    found: dict[str, list[str]] = {}
    for path in sorted(tests_dir.rglob("test_*.py")):
        text = path.read_text()
        defs = [(m.start(), m.group(1) or m.group(2)) for m in TEST_DEF.finditer(text)]
        for m in MARKER.finditer(text):
            target = next((name for pos, name in defs if pos > m.end()), None)
            if target is None:
                continue
            label = f"{path.relative_to(tests_dir).as_posix()}::{target}"
            for cid in clause_ids(m.group(1)):
                found.setdefault(cid, []).append(label)
    return found


@attrs.frozen
class Trace:
    rows: tuple[Row, ...]
    problems: tuple[str, ...]  # failures: each makes `sanspi spec` exit 1
    notes: tuple[str, ...]  # gaps worth reading that are not failures


def build(tests_dir: Path) -> Trace:
    clauses = load_index()
    rules, invs, tests = model_rules(), model_invariants(), marked_tests(tests_dir)
    problems = check_files(clauses)
    notes = []
    rows = []
    for c in clauses.values():
        row = Row(c, tuple(rules.get(c.id, ())), tuple(invs.get(c.id, ())), tuple(dict.fromkeys(tests.get(c.id, ()))))
        rows.append(row)
        if not row.tests:
            problems.append(f"{c.id}: no test names this clause")
        if not row.rules and not row.invariants:
            notes.append(f"{c.id}: no model rule or invariant names this clause")
    for source, ids in (("model", set(rules) | set(invs)), ("tests", set(tests))):
        for cid in sorted(ids - set(clauses)):
            problems.append(f"{cid}: named in the {source} but not in spec/index.toml")
    return Trace(tuple(rows), tuple(problems), tuple(notes))


def render(trace: Trace, verbose: bool = False) -> str:
    def cell(items: tuple[str, ...], limit: int) -> str:
        if not items:
            return "—"
        if verbose or len(items) <= limit:
            return ", ".join(items)
        return ", ".join(items[:limit]) + f" (+{len(items) - limit})"

    lines = ["| clause | title | model rules | invariants | tests |", "|---|---|---|---|---|"]
    for r in trace.rows:
        tests = tuple(t.split("::")[-1] for t in r.tests)
        lines.append(
            f"| {r.clause.id} | {r.clause.title} | {cell(r.rules, 2)} | {cell(r.invariants, 2)} | {cell(tests, 2)} |"
        )
    covered = sum(1 for r in trace.rows if r.tests)
    lines.append("")
    lines.append(f"{len(trace.rows)} clauses; {covered} with tests; "
                 f"{sum(1 for r in trace.rows if r.rules)} with model rules; "
                 f"{sum(1 for r in trace.rows if r.invariants)} with invariants.")
    for n in trace.notes:
        lines.append(f"note: {n}")
    for p in trace.problems:
        lines.append(f"GAP: {p}")
    return "\n".join(lines)
