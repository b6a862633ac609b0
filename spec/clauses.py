"""The spec's clauses as data: spec/index.toml plus the headings of the
clause files, checked against each other."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import attrs

SPEC_DIR = Path(__file__).resolve().parent
CLAUSE_ID = re.compile(r"\b([A-Z]+-\d{2})\b")
HEADING = re.compile(r"^## ([A-Z]+-\d{2}) — (.+?)\s*$", re.MULTILINE)


@attrs.frozen
class Clause:
    id: str
    title: str
    file: str
    results: tuple[str, ...]


def load_index(spec_dir: Path = SPEC_DIR) -> dict[str, Clause]:
    data = tomllib.loads((spec_dir / "index.toml").read_text())
    clauses: dict[str, Clause] = {}
    for entry in data["clause"]:
        c = Clause(entry["id"], entry["title"], entry["file"], tuple(entry.get("results", ())))
        if c.id in clauses:
            raise ValueError(f"spec/index.toml: clause {c.id} appears twice")
        clauses[c.id] = c
    return clauses


def check_files(clauses: dict[str, Clause], spec_dir: Path = SPEC_DIR) -> list[str]:
    """Problems between the index and the clause files, one line each."""
    problems = []
    headings: dict[str, tuple[str, str]] = {}
    for path in sorted(spec_dir.glob("*.md")):
        for cid, title in HEADING.findall(path.read_text()):
            if cid in headings:
                problems.append(f"{cid}: heading in both {headings[cid][0]} and {path.name}")
            headings[cid] = (path.name, title)
    for c in clauses.values():
        if c.id not in headings:
            problems.append(f"{c.id}: no heading '## {c.id} — {c.title}' in spec/{c.file}")
            continue
        file, title = headings[c.id]
        if file != c.file:
            problems.append(f"{c.id}: heading is in {file}, index says {c.file}")
        if title != c.title:
            problems.append(f"{c.id}: heading title differs from the index ({title!r})")
    for cid, (file, _) in headings.items():
        if cid not in clauses:
            problems.append(f"{cid}: heading in {file} is not in spec/index.toml")
    return problems


def clause_ids(text: str | None) -> list[str]:
    """Clause ids named in a docstring or marker text, in order, once each."""
    return list(dict.fromkeys(CLAUSE_ID.findall(text or "")))
