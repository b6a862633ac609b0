"""``sanspi conform``: a lockstep campaign of the model against a provider."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from sanspi.cli import UsageError, clear_progress, progress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("conform", help="check a provider against the model, call by call (Hypothesis lockstep)")
    p.add_argument("--provider", default="sim", help="sim (default), rxe, or MODULE:FACTORY returning (host0, host1)")
    p.add_argument("--topology", choices=("loopback", "two-host"), default="loopback",
                   help="for --provider rxe: one device, or two lab guests")
    p.add_argument("--profile", choices=("ci", "long"), default="ci", help="sizes: ci (quick) or long")
    p.add_argument("--examples", type=int, help="Hypothesis examples (overrides the profile)")
    p.add_argument("--steps", type=int, help="steps per example at most (overrides the profile)")
    p.add_argument("--seed", type=int, help="fix Hypothesis's seed (a run is then repeatable)")
    p.add_argument("--pages", type=int, default=4, help="pages of 4096 bytes in each host's address space")
    p.add_argument("--out", default="reports", help="folder for conform.md, conform.json and divergence tests")
    p.add_argument("--mutants", action="store_true", help="run the campaign on every seeded-bug variant of the "
                   "software provider and print the kill table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from sanspi.conform.campaign import PROFILES

    sizes = dict(PROFILES[args.profile])
    if args.examples is not None:
        sizes["examples"] = args.examples
    if args.steps is not None:
        sizes["steps"] = args.steps
    if sizes["examples"] < 1 or sizes["steps"] < 1:
        raise UsageError("--examples and --steps must be at least 1")
    if not 2 <= args.pages <= 64:
        raise UsageError(f"--pages takes 2 to 64, not {args.pages}")
    if args.mutants:
        return _mutants(args, sizes)
    if args.provider == "rxe" and not _have_rdma_device() and "SANSPI_LAB_TOPOLOGY" not in os.environ:
        return _through_lab(args)
    if args.provider == "rxe" and args.topology == "two-host":
        raise UsageError("the lockstep campaign runs both hosts in one process; two-host runs the verbs "
                         "tests (make test), not yet the campaign")
    return _campaign(args, sizes)


def _have_rdma_device() -> bool:
    path = Path("/sys/class/infiniband")
    return path.is_dir() and any(path.iterdir())


def _through_lab(args: argparse.Namespace) -> int:
    """No RDMA device here: run the same command inside the lab's guest,
    where the project's venv (and so ``sanspi``) is on PATH."""
    print("sanspi conform: no RDMA device on this host; running through the lab (sanspi lab run)", file=sys.stderr)
    from sanspi.cli import main as sanspi_main

    out = str(Path(args.out).resolve())
    inner = [a for a in sys.argv[1:]]
    return sanspi_main(["lab", "run", "--topology", args.topology, "--rwdir", out, "--",
                        "sanspi", *inner, "--out", out])


def _campaign(args: argparse.Namespace, sizes: dict) -> int:
    from sanspi.conform.campaign import model_config, outcome_targets, run_campaign
    from sanspi.conform.providers import ProviderError, load_factory, probe
    from sanspi.conform.report import write

    try:
        factory = load_factory(args.provider, args.pages)
        caps, name = probe(factory)
    except ProviderError as exc:
        raise UsageError(str(exc)) from None
    cfg = model_config(caps, pages=args.pages)
    print(f"conform: {name} ({args.provider}), {sizes['examples']} examples of up to {sizes['steps']} steps"
          + (f", seed {args.seed}" if args.seed is not None else ""))
    result = run_campaign(factory, cfg, sizes["examples"], sizes["steps"], args.seed, progress=progress, name=name)
    clear_progress()
    targets = outcome_targets(cfg)
    files = write(result, args.provider, cfg, targets, Path(args.out),
                  {"profile": args.profile, **sizes, "seed": args.seed})
    print(Path(files[0]).read_text())
    print("written: " + ", ".join(str(f) for f in files))
    return 0 if result.ok else 1


def _mutants(args: argparse.Namespace, sizes: dict) -> int:
    from sanspi.conform.mutants import MUTANTS, hunt

    seeds = (args.seed,) if args.seed is not None else None
    print("| mutant | clause | killed | time to kill (s) | divergence |")
    print("|---|---|---|---|---|")
    survivors = 0
    for m in MUTANTS:
        start = time.perf_counter()
        r = hunt(m, args.pages, sizes["steps"], **({"seeds": seeds} if seeds else {}), progress=progress)
        clear_progress()
        killed = not r.ok
        survivors += not killed
        said = (r.divergence or "").replace("|", "/")[:90]
        print(f"| {m.name} | {m.clause} | {'yes' if killed else 'NO'} | {time.perf_counter() - start:.1f} | {said} |")
    print()
    print(f"{len(MUTANTS) - survivors} of {len(MUTANTS)} mutants killed")
    return 1 if survivors else 0
