"""``sanspi conform``: a lockstep campaign of the model against a provider."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from sanspi.cli import UsageError, clear_progress, progress
from sanspi.model.state import Config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("conform", help="check a provider against the model, call by call (Hypothesis lockstep)")
    p.add_argument("--provider", default="sim", help="sim (default), rxe, or MODULE:FACTORY returning (host0, host1)")
    p.add_argument("--topology", choices=("loopback", "two-host"), default="loopback",
                   help="for --provider rxe: one device, or two lab guests")
    p.add_argument("--profile", choices=("ci", "long"), default="ci", help="sizes: ci (quick) or long")
    p.add_argument("--examples", type=int, help="Hypothesis examples (overrides the profile)")
    p.add_argument("--steps", type=int, help="steps per example at most (overrides the profile)")
    p.add_argument("--seed", type=int, help="fix Hypothesis's seed (a run is then repeatable)")
    p.add_argument("--pages", type=int, default=None,
                   help=f"pages of 4096 bytes in each host's address space the model uses (default: "
                        f"{Config().pages} for sim and rxe, the provider's own for MODULE:FACTORY)")
    p.add_argument("--require-coverage", action="store_true",
                   help="also fail (exit 1) when an outcome the model allows was neither reached nor explained")
    p.add_argument("--out", default="reports", help="folder for conform.md, conform.json and divergence tests")
    p.add_argument("--time-to-report", action="store_true",
                   help="with --mutants (sim): for every mutant, under five seeds, the time to the first divergence "
                        "and to its shrunk report; the medians")
    p.add_argument("--mutants", action="store_true", help="run the campaign on every seeded-bug variant of the "
                   "software provider (or with --provider rxe, of the verbs provider) and print the kill table")
    p.add_argument("--database", metavar="DIR|redis://HOST:PORT/DB",
                   help="the example database: a folder (default $SANSPI_CACHE/hypothesis) or a Redis server "
                        "several machines share; each provider has its own place in it")
    p.add_argument("--workers", metavar="N[,N...]",
                   help="a long campaign: HypoFuzz over N processes (rxe: N lab guests) for --minutes, stopping at "
                        "the first divergence; a list such as 1,2 runs one campaign each and compares steps/s")
    p.add_argument("--minutes", type=float, help=f"with --workers: how long the fuzzer runs (default {FUZZ_MINUTES})")
    p.add_argument("--dashboard", type=int, metavar="PORT",
                   help="with --workers: serve HypoFuzz's dashboard on http://localhost:PORT while it runs")
    p.set_defaults(run=run)


#: How long ``--workers`` fuzzes when --minutes is not given.
FUZZ_MINUTES = 10.0


def run(args: argparse.Namespace) -> int:
    from sanspi.conform.campaign import PROFILES

    sizes = dict(PROFILES[args.profile])
    if args.examples is not None:
        sizes["examples"] = args.examples
    if args.steps is not None:
        sizes["steps"] = args.steps
    if sizes["examples"] < 1 or sizes["steps"] < 1:
        raise UsageError("--examples and --steps must be at least 1")
    if args.pages is not None and not 2 <= args.pages <= 64:
        raise UsageError(f"--pages takes 2 to 64, not {args.pages}")
    if args.workers is not None:
        return _fuzz(args, sizes["steps"])
    for flag in ("minutes", "dashboard"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--{flag} is for long campaigns: give --workers N too")
    if args.mutants:
        if args.provider not in ("sim", "rxe"):
            raise UsageError(f"--mutants takes --provider sim (the software mutants) or rxe (the verbs "
                             f"mutants), not {args.provider}")
        if args.topology == "two-host":
            raise UsageError("--mutants runs both hosts in one process: --topology loopback")
        if args.provider == "rxe":
            if not _have_rdma_device() and "SANSPI_LAB_TOPOLOGY" not in os.environ:
                return _through_lab(args, sizes)
            return _verbs_mutants(args)
        return _mutants(args, sizes)
    if args.topology == "two-host":
        if args.provider != "rxe":
            raise UsageError(f"--topology two-host is for --provider rxe (two lab guests), not {args.provider}")
        # two hosts are always two guests (rxe does not work across network
        # namespaces), even where this machine has an RDMA device of its own
        if os.environ.get("SANSPI_LAB_TOPOLOGY") != "two-host":
            return _through_lab(args, sizes)
        return _two_host(args, sizes)
    if args.provider == "rxe" and not _have_rdma_device() and "SANSPI_LAB_TOPOLOGY" not in os.environ:
        return _through_lab(args, sizes)
    return _campaign(args, sizes)


def _have_rdma_device() -> bool:
    path = Path("/sys/class/infiniband")
    return path.is_dir() and any(path.iterdir())


#: The slowest lockstep steps a second a campaign in a lab guest may run at
#: before the lab's deadline stops it (rxe under TCG ran 30 to 77).
SLOWEST_LAB_STEPS_PER_S = 5.0


def lab_deadline(sizes: dict) -> int:
    """Seconds the lab gives a campaign of ``sizes``: every example at its
    longest, top-up rounds included, at SLOWEST_LAB_STEPS_PER_S; at least
    lab run's default. (That default, 1800 s, would cut a ``long`` campaign
    off with no report.)"""
    from sanspi.conform.campaign import TOP_UP_ROUNDS

    examples = sizes["examples"] * (1 + TOP_UP_ROUNDS / 2)
    return int(max(1800, examples * sizes["steps"] / SLOWEST_LAB_STEPS_PER_S))


def _through_lab(args: argparse.Namespace, sizes: dict) -> int:
    """No RDMA device here: run the same command inside the lab's guest,
    where the project's venv (and so ``sanspi``) is on PATH."""
    print("sanspi conform: no RDMA device on this host; running through the lab (sanspi lab run)", file=sys.stderr)
    from sanspi.cli import main as sanspi_main

    out = str(Path(args.out).resolve())
    inner = [a for a in sys.argv[1:]]
    # the guests see the host read-only, except these folders: the report's,
    # and the example database's, so what a guest finds is replayed next time
    db = _lab_database(args)
    return sanspi_main(["lab", "run", "--topology", args.topology, "--rwdir", out, "--rwdir", str(db),
                        "--timeout", str(lab_deadline(sizes)), "--",
                        "sanspi", *inner, "--out", out, "--database", str(db)])


def _lab_database(args: argparse.Namespace) -> Path:
    """The example database's folder for a run in lab guests (made here)."""
    from sanspi.conform.exampledb import default_location, is_redis

    if is_redis(args.database):
        raise UsageError("--provider rxe runs in lab guests, which reach no network: give --database a folder, "
                         "not a Redis URL")
    db = Path(args.database or default_location()).expanduser().resolve()
    db.mkdir(parents=True, exist_ok=True)
    return db


def _two_host(args: argparse.Namespace, sizes: dict) -> int:
    """Inside ``sanspi lab run --topology two-host``: host 1 serves its
    provider to host 0 (conform/agent.py), host 0 runs the campaign."""
    from sanspi.conform import agent

    me = os.environ.get("SANSPI_LAB_HOST")
    local, peer = os.environ.get("SANSPI_LAB_LOCAL_ADDR"), os.environ.get("SANSPI_LAB_PEER_ADDR")
    if me not in ("0", "1") or not local or not peer:
        raise UsageError("two-host needs SANSPI_LAB_HOST, SANSPI_LAB_LOCAL_ADDR and SANSPI_LAB_PEER_ADDR "
                         "(run it through `sanspi lab run --topology two-host`)")
    try:
        if me == "1":
            print(f"conform: host 1 serves host 0's campaign on {local}:{agent.PORT}", flush=True)
            status = agent.serve(local, agent.PORT)
            print("conform: host 1: host 0 said bye", flush=True)
            return status
        link = agent.connect(peer, agent.PORT)
    except agent.AgentError as exc:
        print(f"sanspi conform: host {me}: {exc}", file=sys.stderr)
        return 1
    try:
        there = link.call("hello")
        here = agent.environment()
        hosts = {key: f"host 0 {here[key]}, host 1 {there[key]}" for key in ("kernel", "device")}
        return _campaign(args, sizes, link=link, hosts=hosts)
    except agent.AgentLost as exc:
        print(f"sanspi conform: {exc}", file=sys.stderr)
        return 1
    finally:
        link.bye()


def _campaign(args: argparse.Namespace, sizes: dict, link=None, hosts: dict | None = None) -> int:
    """The campaign; with ``link`` (two-host), host 1 is the agent's at its end."""
    from sanspi.conform.argtypes import check_argument_types
    from sanspi.conform.campaign import TOP_UP_ROUNDS, campaign_targets, run_campaign

    factory, probed, cfg = _open(args, link)
    if factory is None:
        return 1
    db, where = _database(args, cfg)
    name = probed.name
    print(f"conform: {name} ({args.provider}, {args.topology}), {sizes['examples']} examples of up to "
          f"{sizes['steps']} steps" + (f", seed {args.seed}" if args.seed is not None else "")
          + f"; example database {where}" + (" (not used with --seed)" if args.seed is not None else ""))
    targets = campaign_targets(cfg)
    try:
        types = check_argument_types(factory)
        print(f"conform: arguments outside their type: {types[0]} calls, {len(types[1])} answered otherwise "
              f"than the spec says")
        result = run_campaign(factory, cfg, sizes["examples"], sizes["steps"], args.seed, database=db,
                              progress=progress, name=name, targets=targets, top_up=TOP_UP_ROUNDS)
    finally:
        if link is not None:  # host 1 may go: the targets and the report need only this host
            link.bye()
    clear_progress()
    if link is not None and link.lost:
        # the World saw it as a provider exception; it is a broken lab
        print(f"sanspi conform: the campaign stopped: {link.lost}", file=sys.stderr)
        return 1
    return _finish(args, result, cfg, targets, Path(args.out),
                   {"profile": args.profile, **sizes, "seed": args.seed, "database": where}, hosts, types)


def _open(args: argparse.Namespace, link=None):
    """(factory, probed, cfg) for --provider and --pages; (None, None, None)
    when the lab broke under a two-host run (the message is printed)."""
    from sanspi.conform.providers import ProviderError, open_provider

    try:
        return open_provider(args.provider, args.pages, link)
    except ProviderError as exc:
        if link is not None and link.lost:  # not the user's input: the lab broke
            print(f"sanspi conform: {link.lost}", file=sys.stderr)
            return None, None, None
        raise UsageError(str(exc)) from None


def _database(args: argparse.Namespace, cfg: Config):
    """The example database --database names for this provider, and where it is."""
    from sanspi.conform.exampledb import DatabaseError, describe, open_database

    try:
        return open_database(args.database, args.provider, cfg), describe(args.database, args.provider, cfg)
    except DatabaseError as exc:
        raise UsageError(str(exc)) from None


def _finish(args: argparse.Namespace, result, cfg: Config, targets: set[str], out: Path, settings: dict,
            hosts: dict | None, types: tuple[int, list[str]]) -> int:
    """Write and print the report; the exit status."""
    from sanspi.conform.coverage import UNREACHABLE, uncovered
    from sanspi.conform.report import write

    files = write(result, args.provider, cfg, targets, out, settings, hosts, types)
    print(Path(files[0]).read_text())
    print("written: " + ", ".join(str(f) for f in files))
    if not result.ok or types[1]:
        return 1
    gaps = uncovered(result.coverage, targets, skip=UNREACHABLE)
    if args.require_coverage and gaps:
        shown = ", ".join(gaps[:4]) + (f" and {len(gaps) - 4} more (see the report)" if len(gaps) > 4 else "")
        print(f"sanspi conform: {len(gaps)} target(s) were not reached: {shown}", file=sys.stderr)
        return 1
    return 0


# --- long campaigns: HypoFuzz (conform/fuzz.py) ------------------------------------------------

#: What a lab guest running one fuzz worker leaves for the host to merge.
GUEST_RESULT = "fuzz-result.pickle"


def _fuzz(args: argparse.Namespace, steps: int) -> int:
    """``--workers N[,N...]``: one long campaign for each N; with several,
    the steps/s of each against the first, measured in this one run."""
    try:
        counts = [int(n) for n in args.workers.split(",")]
    except ValueError:
        raise UsageError(f"--workers takes a number of processes or a list such as 1,2, "
                         f"not {args.workers!r}") from None
    if not counts or min(counts) < 1:
        raise UsageError(f"--workers takes numbers of at least 1, not {args.workers!r}")
    minutes = FUZZ_MINUTES if args.minutes is None else args.minutes
    if not 0 < minutes < 60 * 24 * 365:
        raise UsageError(f"--minutes must be a positive number, not {args.minutes}")
    for flag, given in (("--examples", args.examples is not None), ("--seed", args.seed is not None),
                        ("--mutants", args.mutants), ("--time-to-report", args.time_to_report),
                        ("--topology two-host", args.topology == "two-host")):
        if given:
            raise UsageError(f"{flag} does not go with --workers (a long campaign runs for --minutes, "
                             f"on one host's loopback)")
    lab = args.provider == "rxe" and not _have_rdma_device() and "SANSPI_LAB_TOPOLOGY" not in os.environ
    rows = []
    for n in counts:
        out = Path(args.out) if len(counts) == 1 else Path(args.out) / f"workers-{n}"
        status, result = (_fuzz_in_lab if lab else _fuzz_here)(args, steps, n, minutes, out)
        rows.append((n, status, result))
    if len(counts) > 1:
        base = rows[0][2]
        base_rate = base.steps / base.seconds if base and base.seconds else 0.0
        print(f"| workers | examples | steps | seconds | steps/s | against {counts[0]} worker(s) | divergence |")
        print("|---|---|---|---|---|---|---|")
        for n, _, r in rows:
            rate = r.steps / r.seconds if r and r.seconds else 0.0
            ratio = f"{rate / base_rate:.2f}" if base_rate else "-"
            said = "-" if r is None else (r.divergence or "none").replace("|", "/")[:60]
            print(f"| {n} | {r.examples if r else '-'} | {r.steps if r else '-'} | "
                  f"{r.seconds if r else 0:.0f} | {rate:.1f} | {ratio} | {said} |")
    return max(status for _, status, _ in rows)


def _fuzz_here(args: argparse.Namespace, steps: int, workers: int, minutes: float, out: Path):
    """HypoFuzz over ``workers`` processes on this host; (status, result)."""
    import pickle

    from sanspi.conform import fuzz
    from sanspi.conform.argtypes import check_argument_types
    from sanspi.conform.campaign import campaign_targets
    from sanspi.conform.report import environment

    factory, probed, cfg = _open(args)
    db, where = _database(args, cfg)
    targets = campaign_targets(cfg)
    types = check_argument_types(factory)
    print(f"conform: {probed.name} ({args.provider}), HypoFuzz {fuzz.hypofuzz_version()} over {workers} "
          f"worker process(es) for {minutes:g} min, examples of up to {steps} steps; example database {where}"
          + (f"; dashboard on http://localhost:{args.dashboard}/" if args.dashboard is not None else ""))
    print(f"conform: arguments outside their type: {types[0]} calls, {len(types[1])} answered otherwise "
          f"than the spec says")
    target = fuzz.Target(args.provider, args.pages, steps, args.database, out.resolve() / "fuzz")
    try:
        result, records = fuzz.campaign(target, workers, minutes * 60, factory, cfg, probed.name, db,
                                        dashboard=args.dashboard, progress=progress)
    except fuzz.FuzzError as exc:
        clear_progress()
        print(f"sanspi conform: {exc}", file=sys.stderr)
        return 1, None
    clear_progress()
    if not records:
        print("conform: an example the database holds diverges: replayed, HypoFuzz not started")
    out.mkdir(parents=True, exist_ok=True)
    # for the host when this runs in a lab guest: it merges the guests' results
    (out / GUEST_RESULT).write_bytes(pickle.dumps({"result": result, "cfg": cfg, "types": types,
                                                   "environment": environment()}))
    settings = {"workers": workers, "minutes": minutes, "steps": steps, "database": where,
                "fuzzer": f"hypofuzz {fuzz.hypofuzz_version()}",
                "steps per worker": sorted((r.steps for r in records), reverse=True) or "replayed from the database"}
    return _finish(args, result, cfg, targets, out, settings, None, types), result


def _fuzz_in_lab(args: argparse.Namespace, steps: int, guests: int, minutes: float, out: Path):
    """rxe on a host without RDMA: one loopback lab guest per worker, each
    fuzzing with one HypoFuzz process into the shared database folder (the
    guests may write only folders passed with --rwdir); their results are
    merged into one report here. (status, result)"""
    import pickle
    import subprocess

    from sanspi.conform import fuzz
    from sanspi.conform.campaign import campaign_targets
    from sanspi.conform.exampledb import describe

    db_root = _lab_database(args)
    run_dir = out.resolve() / "fuzz"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    print(f"conform: rxe, {guests} lab guest(s) with one HypoFuzz worker each for {minutes:g} min (boot not "
          f"counted), examples of up to {steps} steps; example database under {db_root}; guests' output in {run_dir}")
    procs = []
    for i in range(guests):
        inner = ["sanspi", "conform", "--provider", "rxe", "--workers", "1", "--minutes", str(minutes),
                 "--steps", str(steps), "--database", str(db_root), "--out", str(run_dir / f"guest-{i}")]
        inner += ["--pages", str(args.pages)] if args.pages else []
        argv = [sys.executable, "-m", "sanspi", "lab", "run", "--topology", "loopback", "--rwdir", str(run_dir),
                "--rwdir", str(db_root), "--timeout", str(int(minutes * 60 + 1800)), "--", *inner]
        with open(run_dir / f"guest-{i}.log", "w") as log:
            procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    started = time.monotonic()
    while any(p.poll() is None for p in procs):
        time.sleep(2)
        progress(f"{sum(p.poll() is None for p in procs)} of {guests} guests running, "
                 f"{time.monotonic() - started:.0f} s")
    clear_progress()
    loaded = []
    for i, p in enumerate(procs):
        path = run_dir / f"guest-{i}" / GUEST_RESULT
        if not path.is_file():
            log = run_dir / f"guest-{i}.log"
            lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
            print(f"sanspi conform: guest {i} left no result (exit {p.returncode}): "
                  f"{lines[-1] if lines else 'no output'}; its output: {log}", file=sys.stderr)
            return 1, None
        loaded.append(pickle.loads(path.read_bytes()))  # our own guests' pickles, through --rwdir
    result = fuzz.merge([g["result"] for g in loaded])
    cfg, types = loaded[0]["cfg"], loaded[0]["types"]
    env = loaded[0]["environment"]
    hosts = {"kernel": env["kernel"], "device": env["device"], "topology": f"{guests} loopback guest(s)"}
    settings = {"workers": guests, "minutes": minutes, "steps": steps,
                "database": describe(str(db_root), args.provider, cfg),
                "fuzzer": f"hypofuzz {fuzz.hypofuzz_version()}, one worker a guest",
                "steps per guest": [g["result"].steps for g in loaded]}
    return _finish(args, result, cfg, campaign_targets(cfg), out, settings, hosts, types), result


def _mutants(args: argparse.Namespace, sizes: dict) -> int:
    from sanspi.conform.mutants import MUTANTS, hunt

    if args.time_to_report:
        return _time_to_report(args, sizes)

    seeds = (args.seed,) if args.seed is not None else None
    print("| mutant | clause | killed | time to kill (s) | divergence |")
    print("|---|---|---|---|---|")
    survivors = 0
    for m in MUTANTS:
        start = time.perf_counter()
        r = hunt(m, args.pages or Config().pages, sizes["steps"], **({"seeds": seeds} if seeds else {}), progress=progress)
        clear_progress()
        killed = not r.ok
        survivors += not killed
        said = (r.divergence or "").replace("|", "/")[:90]
        print(f"| {m.name} | {m.clause} | {'yes' if killed else 'NO'} | {time.perf_counter() - start:.1f} | {said} |")
    print()
    print(f"{len(MUTANTS) - survivors} of {len(MUTANTS)} mutants killed")
    return 1 if survivors else 0


#: Seeds the time-to-report figure is measured under.
REPORT_SEEDS = (0, 1, 2, 3, 4)


def _time_to_report(args: argparse.Namespace, sizes: dict) -> int:
    """Each software mutant under each of REPORT_SEEDS: the campaign with
    shrinking, as a user runs it; the time until the divergence was found,
    the time its trace took to shrink, and the steps left. A report in a
    minute is the goal (the median of find + shrink)."""
    import statistics

    from sanspi.conform.campaign import model_config, run_campaign
    from sanspi.conform.mutants import MUTANT_EXAMPLES, MUTANTS
    from sanspi.conform.providers import SIM_CAPABILITIES

    pages = args.pages or Config().pages
    cfg = model_config(SIM_CAPABILITIES, pages=pages)
    seeds = (args.seed,) if args.seed is not None else REPORT_SEEDS
    print(f"| mutant | seeds killed | median find (s) | median shrink (s) | median report (s) | steps found -> "
          f"shrunk (median) | 1-minimal |")
    print("|---|---|---|---|---|---|---|")
    totals, all_minimal = [], True
    for m in MUTANTS:
        finds, shrinks, found, kept, minimal = [], [], [], [], True
        for seed in seeds:
            r = run_campaign(lambda: m.pair(SIM_CAPABILITIES, pages, 4096), cfg, MUTANT_EXAMPLES, sizes["steps"],
                             seed, use_database=False, progress=progress, name=m.name)
            clear_progress()
            if r.ok:
                continue
            finds.append(r.find_seconds)
            shrinks.append(r.shrink_seconds)
            found.append(r.found_steps)
            kept.append(len(r.trace))
            minimal &= r.minimal
            totals.append(r.find_seconds + r.shrink_seconds)
        all_minimal &= minimal
        med = (lambda xs: f"{statistics.median(xs):.1f}" if xs else "-")
        print(f"| {m.name} | {len(finds)}/{len(seeds)} | {med(finds)} | {med(shrinks)} | "
              f"{med([f + s for f, s in zip(finds, shrinks)])} | "
              f"{statistics.median(found) if found else '-'} -> {statistics.median(kept) if kept else '-'} | "
              f"{'yes' if minimal else 'NO'} |")
    print()
    if totals:
        print(f"{len(totals)} reports: median {statistics.median(totals):.1f} s from the start to the shrunk report "
              f"(max {max(totals):.1f} s); every trace 1-minimal: {'yes' if all_minimal else 'NO'}")
    return 0 if totals and statistics.median(totals) <= 60 and all_minimal else 1


def _verbs_mutants(args: argparse.Namespace) -> int:
    """The verbs provider's mutants on this host's rxe device, then the
    unmutated provider on the same budget (it must survive: a control)."""
    from sanspi.conform.mutants import MUTANT_SEEDS
    from sanspi.conform.verbs_mutants import (
        CONTROL, VERBS_MUTANT_EXAMPLES, VERBS_MUTANT_PAGES, VERBS_MUTANT_STEPS, VERBS_MUTANTS, hunt_verbs,
    )

    seeds = (args.seed,) if args.seed is not None else MUTANT_SEEDS
    steps = args.steps if args.steps is not None else VERBS_MUTANT_STEPS
    examples = args.examples if args.examples is not None else VERBS_MUTANT_EXAMPLES
    print(f"verbs mutants on rxe: at most {examples} examples of up to {steps} steps under each of "
          f"seeds {', '.join(map(str, seeds))}")
    print("| mutant | clause | killed | examples | time to kill (s) | divergence |")
    print("|---|---|---|---|---|---|")
    survivors = 0
    for m in (*VERBS_MUTANTS, CONTROL):
        h = hunt_verbs(m, args.pages or VERBS_MUTANT_PAGES, steps, seeds, examples, progress=progress)
        clear_progress()
        said = (h.result.divergence or "").replace("|", "/")[:90]
        if m is CONTROL:
            control_ok = not h.killed and not h.errors
            verdict = "no (control)" if control_ok else "CONTROL DIVERGED"
            said = said or "; ".join(h.errors)[:90]
        else:  # a kill that came with a swallowed exception may be a broken override, not the bug
            killed = h.killed and not h.errors
            survivors += not killed
            verdict = "yes" if killed else ("NO (exceptions: " + "; ".join(h.errors)[:60] + ")" if h.errors else "NO")
        print(f"| {m.name} | {m.clause} | {verdict} | {h.examples} | {h.seconds:.1f} | {said} |")
    print()
    print(f"{len(VERBS_MUTANTS) - survivors} of {len(VERBS_MUTANTS)} verbs mutants killed; the unmutated "
          f"provider {'survived' if control_ok else 'DIVERGED'}")
    return 1 if survivors or not control_ok else 0
