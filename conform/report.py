"""The campaign's report: Markdown for people, JSON for tools, and a runnable
pytest file for each divergence (its shrunk trace)."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path

import attrs

from sanspi.conform.campaign import UNREACHABLE, CampaignResult, uncovered
from sanspi.model.state import Config


def environment() -> dict[str, str]:
    return {
        "machine": platform.node(),
        "kernel": os.environ.get("SANSPI_LAB_KERNEL", platform.release()),
        "device": os.environ.get("SANSPI_LAB_DEVICE", "none (software provider)"),
        "topology": os.environ.get("SANSPI_LAB_TOPOLOGY", "in-process"),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def pytest_file(result: CampaignResult, spec: str, cfg: Config) -> str:
    steps = ",\n".join(f"    ({s.name!r}, {s.args!r})" for s in result.trace)
    cfg_args = ", ".join(f"{f.name}={getattr(cfg, f.name)!r}" for f in attrs.fields(Config))
    return f'''"""A divergence sanspi conform found in provider {spec!r}, shrunk by Hypothesis:

    {result.divergence}

Run it with: python -m pytest {{this file}}
"""

from sanspi.conform.campaign import replay
from sanspi.conform.world import Ref
from sanspi.model.state import Config

PROVIDER = {spec!r}
CONFIG = Config({cfg_args})
STEPS = [
{steps},
]


def test_divergence():
    replay(PROVIDER, CONFIG, STEPS)
'''


def write(result: CampaignResult, spec: str, cfg: Config, targets: dict[str, set[str]], out: Path,
          settings: dict, hosts: dict[str, str] | None = None) -> list[Path]:
    """``hosts`` overrides entries of ``environment()``: a two-host run names
    both guests' kernel and device."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**environment(), **(hosts or {})}
    missing = uncovered(result.coverage, targets)
    explained = {f"{n} -> {r}": why for (n, r), why in UNREACHABLE.items()}
    unexplained = [m for m in missing if m not in explained]
    rate = result.steps / result.seconds if result.seconds else 0.0
    written = []
    data = {
        "provider": spec, "name": result.provider, **env, **settings,
        "examples_run": result.examples, "steps_run": result.steps, "rounds": result.rounds,
        "seconds": round(result.seconds, 2),
        "steps_per_second": round(rate, 1),
        "coverage": [{"transition": n, "result": r, "count": c} for (n, r), c in sorted(result.coverage.items())],
        "not_reached": [{"outcome": m, "why": explained.get(m, "")} for m in missing],
        "divergence": result.divergence,
        "trace": [{"step": s.name, "args": repr(s.args), "status": s.status} for s in result.trace],
    }
    (out / "conform.json").write_text(json.dumps(data, indent=1))
    written.append(out / "conform.json")
    lines = [f"# sanspi conform: {spec}", "",
             f"- provider: {result.provider} ({spec}); machine {env['machine']}; kernel {env['kernel']}; "
             f"device {env['device']}; topology {env['topology']}; {env['date']}",
             f"- examples {result.examples}, steps {result.steps}, {result.seconds:.1f} s "
             f"({rate:.0f} steps/s); settings {settings}"
             + (f"; {result.rounds - 1} top-up round(s) for coverage" if result.rounds > 1 else ""),
             "- coverage: " + (f"{len(unexplained)} outcome(s) the model allows were not reached" if unexplained
                               else "every outcome the model allows was reached, or is explained below"),
             f"- result: {'no divergence' if result.ok else 'DIVERGENCE: ' + str(result.divergence)}", "",
             "## Transition x outcome coverage", "", "| transition | result | count |", "|---|---|---|"]
    lines += [f"| {n} | {r} | {c} |" for (n, r), c in sorted(result.coverage.items())]
    lines += ["", "## Outcomes the model allows that were not reached", ""]
    lines += [f"- {m}" + (f": {explained[m]}" if m in explained else "") for m in missing] or ["- none"]
    if not result.ok:
        test = out / f"test_divergence_{spec.replace(':', '_').replace('.', '_').replace('-', '_')}.py"
        test.write_text(pytest_file(result, spec, cfg))
        written.append(test)
        lines += ["", "## Divergence", "", f"{result.divergence}", "",
                  f"Shrunk trace ({len(result.trace)} steps), runnable as `python -m pytest {test}`:", "", "```"]
        lines += [f"{i + 1}. {s.name}({', '.join(f'{k}={v!r}' for k, v in s.args.items())})"
                  f"{'' if s.status is None else f' -> {s.status}'}" for i, s in enumerate(result.trace)]
        lines += ["```"]
    (out / "conform.md").write_text("\n".join(lines) + "\n")
    written.insert(0, out / "conform.md")
    return written
