"""The campaign's report: Markdown for people, JSON for tools, and a runnable
pytest file for each divergence (its shrunk trace)."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path

import attrs

from sanspi.conform.campaign import CampaignResult
from sanspi.conform.coverage import UNREACHABLE, outcome_label, uncovered
from sanspi.model.state import Config


def environment() -> dict[str, str]:
    return {
        "machine": platform.node(),
        "kernel": os.environ.get("SANSPI_LAB_KERNEL", platform.release()),
        "device": os.environ.get("SANSPI_LAB_DEVICE", "none (software provider)"),
        "topology": os.environ.get("SANSPI_LAB_TOPOLOGY", "in-process"),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def import_root(spec: str) -> str | None:
    """The sys.path entry from which ``MODULE:FACTORY``'s module was
    imported, so the divergence test runs as written, without PYTHONPATH
    (None for sim, rxe and modules installed in site-packages)."""
    import importlib
    import sys

    module = spec.partition(":")[0]
    if ":" not in spec or module in ("mutant",):
        return None
    mod = sys.modules.get(module) or importlib.import_module(module)
    file = getattr(mod, "__file__", None)
    if not file or "site-packages" in file:
        return None
    root = Path(file).resolve().parent
    for _ in module.split(".")[1:]:
        root = root.parent
    return str(root)


def factory_spec(factory) -> str | None:
    """``MODULE:FACTORY`` naming ``factory`` when it can be imported by that
    name (a module-level function, not a lambda or a nested function)."""
    module, name = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or module == "__main__" or "<" in name or "." in name:
        return None
    return f"{module}:{name}"


def pytest_file(result: CampaignResult, spec: str | None, cfg: Config) -> str:
    steps = ",\n".join(f"    ({s.name!r}, {s.args!r})" for s in result.trace)
    root = import_root(spec) if spec else None
    path_lines = (f"import sys\n\nsys.path.insert(0, {root!r})  # where {spec.partition(':')[0]} was imported from\n\n"
                  if root else "")
    provider_line = (f"PROVIDER = {spec!r}" if spec else
                     "PROVIDER = None  # the factory was not importable by name: set MODULE:FACTORY here")
    said = "\n".join(f"    {i + 1}. {s}" for i, s in enumerate(result.trace))
    cfg_args = ", ".join(f"{f.name}={getattr(cfg, f.name)!r}" for f in attrs.fields(Config))
    return f'''"""A divergence sanspi conform found in provider {spec!r}, shrunk to
{len(result.trace)} steps (no single step can go and keep it):

    {result.divergence}

The trace, with what the provider answered and the clause behind each
outcome:

{said}

Run it with: python -m pytest {{this file}}
"""

{path_lines}from sanspi.conform.campaign import replay
from sanspi.conform.world import Ref
from sanspi.model.state import Config

{provider_line}
CONFIG = Config({cfg_args})
STEPS = [
{steps},
]


def test_divergence():
    assert PROVIDER, "name the provider's factory as MODULE:FACTORY in PROVIDER"
    replay(PROVIDER, CONFIG, STEPS)
'''


def _table(rows: list[tuple[str, int]]) -> list[str]:
    return ["| reached | count |", "|---|---|"] + [f"| {k} | {n} |" for k, n in rows]


def write(result: CampaignResult, spec: str, cfg: Config, targets: set[str], out: Path,
          settings: dict, hosts: dict[str, str] | None = None,
          types: tuple[int, list[str]] | None = None) -> list[Path]:
    """``hosts`` overrides entries of ``environment()``: a two-host run names
    both guests' kernel and device. ``types`` is what the check of
    arguments outside their type found (conform/argtypes.py)."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**environment(), **(hosts or {})}
    missing = uncovered(result.coverage, targets)
    unexplained = [m for m in missing if m not in UNREACHABLE]
    rate = result.steps / result.seconds if result.seconds else 0.0
    outcomes = sorted((outcome_label(o), n) for o, n in result.coverage.outcomes.items())
    behaviour = sorted(result.coverage.behaviour.items())
    written = []
    data = {
        "provider": spec, "name": result.provider, **env, **settings,
        "examples_run": result.examples, "steps_run": result.steps, "rounds": result.rounds,
        "seconds": round(result.seconds, 2),
        "steps_per_second": round(rate, 1),
        "targets": len(targets),
        "outcomes": [{"outcome": k, "count": n} for k, n in outcomes],
        "behaviour": [{"class": k, "count": n} for k, n in behaviour],
        "not_reached": [{"target": m, "why": UNREACHABLE.get(m, "")} for m in missing],
        "divergence": result.divergence,
        "argument_types": {"calls": types[0], "differences": types[1]} if types else None,
        "find_seconds": round(result.find_seconds, 2),
        "shrink_seconds": round(result.shrink_seconds, 2),
        "found_steps": result.found_steps,
        "found_example": result.found_example,
        "minimal": result.minimal,
        "trace": [{"step": s.name, "args": repr(s.args), "status": s.status, "why": s.why, "issued": s.issued}
                  for s in result.trace],
    }
    (out / "conform.json").write_text(json.dumps(data, indent=1))
    written.append(out / "conform.json")
    lines = [f"# sanspi conform: {spec or result.provider}", "",
             f"- provider: {result.provider} ({spec or 'a factory passed in'}); machine {env['machine']}; kernel {env['kernel']}; "
             f"device {env['device']}; topology {env['topology']}; {env['date']}",
             f"- examples {result.examples}, steps {result.steps}, {result.seconds:.1f} s "
             f"({rate:.0f} steps/s); settings {settings}"
             + (f"; {result.rounds - 1} top-up round(s) for coverage" if result.rounds > 1 else ""),
             f"- coverage: {len(targets) - len(missing)} of {len(targets)} targets reached "
             f"({len(outcomes)} outcomes, {len(behaviour)} behaviour classes); "
             + (f"{len(unexplained)} target(s) the campaign could reach were not reached" if unexplained
                else "every target was reached, or is explained below"),
             f"- result: {'no divergence' if result.ok else 'DIVERGENCE: ' + str(result.divergence)}"]
    if types:
        lines.append(f"- arguments outside their type: {types[0]} calls, "
                     + ("every answer as the spec says" if not types[1] else
                        f"{len(types[1])} DIFFERENT: " + "; ".join(types[1][:5])))
    if not result.ok:
        lines.append(f"- found after {result.find_seconds:.1f} s"
                     + (f" in example {result.found_example}" if result.found_example else "")
                     + f" ({result.found_steps} steps), shrunk in "
                     f"{result.shrink_seconds:.1f} s to {len(result.trace)} steps"
                     + ("" if result.minimal else " (shrinking ran out of time: steps may remain that "
                        "do not matter)"))
    lines += ["", "## Outcomes (transition -> result [clause: the check that decided it])", ""]
    lines += _table(outcomes)
    lines += ["", "## Behaviour (what the provider was made to do)", ""]
    lines += _table(behaviour)
    lines += ["", "## Targets not reached", ""]
    lines += [f"- {m}" + (f": {UNREACHABLE[m]}" if m in UNREACHABLE else "") for m in missing] or ["- none"]
    if not result.ok:
        test = out / f"test_divergence_{(spec or result.provider).replace(':', '_').replace('.', '_').replace('-', '_')}.py"
        test.write_text(pytest_file(result, spec, cfg))
        written.append(test)
        lines += ["", "## Divergence", "", f"{result.divergence}", "",
                  f"Shrunk trace ({len(result.trace)} steps), runnable as `python -m pytest {test}`:", "", "```"]
        lines += [f"{i + 1}. {s}" for i, s in enumerate(result.trace)]
        lines += ["```"]
    (out / "conform.md").write_text("\n".join(lines) + "\n")
    written.insert(0, out / "conform.md")
    return written
