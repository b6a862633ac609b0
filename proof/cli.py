"""``sanspi prove`` and ``sanspi replay``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sanspi.cli import UsageError, clear_progress, progress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prove", help="prove the model's invariants with z3 (induction, or BMC with --bmc)")
    p.add_argument("--bmc", type=int, metavar="K", help="search every sequence of at most K steps from Init")
    p.add_argument("--unbounded", action="store_true",
                   help="prove for any number of registrations, connections and pages (z3 arrays and quantifiers)")
    p.add_argument("--stats", action="store_true",
                   help="time the whole proof, the unbounded proof and BMC at K = 4, 6, 8")
    p.add_argument("--timeout", type=float, default=20.0, metavar="S", help="seconds per z3 query (default 20)")
    p.add_argument("--trace-out", default="reports/bmc-trace.json", metavar="PATH",
                   help="where --bmc writes a counterexample trace (default reports/bmc-trace.json)")
    p.add_argument("--bug", metavar="NAME", help="prove a seeded-bug variant of the model (see --list-bugs)")
    p.add_argument("--list-bugs", action="store_true", help="list the seeded bugs and exit")
    p.add_argument("--self-test", action="store_true",
                   help="prove every seeded-bug variant and check that each yields a counterexample")
    p.set_defaults(run=run_prove)

    r = sub.add_parser("replay", help="run a trace (from `sanspi prove --bmc`) on the executable model")
    r.add_argument("trace", help="a sanspi-trace/1 JSON file")
    r.add_argument("--bug", metavar="NAME", help="replay on a seeded-bug variant of the model")
    r.set_defaults(run=run_replay)


def _bug(name: str | None):
    from sanspi.proof.seeded import BY_NAME

    if name is None:
        return None
    if name not in BY_NAME:
        raise UsageError(f"no seeded bug named {name!r} (sanspi prove --list-bugs lists them)")
    return BY_NAME[name]


def run_prove(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from sanspi.proof.seeded import SEEDED_BUGS

    if args.timeout <= 0:
        raise UsageError(f"--timeout must be positive, not {args.timeout}")
    if args.bmc is not None and not 1 <= args.bmc <= 30:
        raise UsageError(f"--bmc takes a bound from 1 to 30, not {args.bmc}")
    if args.unbounded and (args.bmc is not None or args.stats):
        raise UsageError("--unbounded is a proof by induction: it does not combine with --bmc or --stats")
    if args.list_bugs:
        for b in SEEDED_BUGS:
            print(f"{b.name:32} {b.clause:10} {b.what}")
        return 0
    if args.self_test:
        return _self_test(args)
    bug = _bug(args.bug)
    with (bug.applied() if bug else nullcontext(None)) as table:
        if args.stats:
            return _stats(args, table)
        if args.bmc is not None:
            return _bmc(args, table)
        return _induction(args, table)


def _proof(args):
    """(backend, config, the bounds in words) of the proof asked for."""
    from sanspi.proof.induction import BOUNDED, PROOF_CONFIG, UNBOUNDED, UNBOUNDED_CONFIG

    if args.unbounded:
        c = UNBOUNDED_CONFIG
        return UNBOUNDED, c, (f"2 hosts, any number of connections, registrations a host and pages of "
                              f"{c.page_size} bytes, up to {c.max_sge} buffer(s) a call")
    return BOUNDED, PROOF_CONFIG, _bounds(PROOF_CONFIG)


def _induction(args, table) -> int:
    from sanspi.proof.induction import prove
    from sanspi.proof.report import render_counterexample, render_table

    backend, cfg, bounds = _proof(args)
    start = time.perf_counter()
    results = prove(cfg, transitions=table, timeout_ms=int(args.timeout * 1000), progress=progress,
                    backend=backend)
    clear_progress()
    elapsed = time.perf_counter() - start
    print(render_table(results))
    failed = [r for r in results if not r.ok]
    shown = set()
    for r in failed:
        if r.cex and (r.check, r.transition) not in shown:
            shown.add((r.check, r.transition))
            print()
            print(render_counterexample(r))
    unknown = sum(1 for r in failed if r.verdict == "unknown")
    print()
    print(f"{len(results)} checks in {elapsed:.1f}s: {len(results) - len(failed)} proved, "
          f"{len(failed) - unknown} counterexamples, {unknown} unknown (bounds: {bounds})")
    return 1 if failed else 0


def _bounds(c) -> str:
    """What a proof's bounded instance is, in words."""
    return (f"2 hosts, {c.sockets} connection(s), {c.slots} registrations a host, {c.pages} pages of "
            f"{c.page_size} bytes, up to {c.max_sge} buffer(s) a call")


def _bmc(args, table) -> int:
    from sanspi.model.trace import dumps, render
    from sanspi.proof.bmc import BMC_CONFIG, bmc

    result = bmc(args.bmc, BMC_CONFIG, transitions=table, timeout_ms=int(args.timeout * 1000) * 6,
                 progress=progress)
    clear_progress()
    if result.verdict == "none found":
        print(f"no violation in any sequence of at most {args.bmc} steps from Init "
              f"({result.seconds:.1f}s; bounds: {_bounds(BMC_CONFIG)})")
        return 0
    if result.verdict == "unknown":
        print(f"BMC at {args.bmc} steps: unknown (z3 gave up within its timeout): a failure, not a pass")
        return 1
    trace = result.trace
    print(f"violation within {len(trace.steps)} steps ({result.seconds:.1f}s):")
    print(render(trace))
    out = Path(args.trace_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dumps(trace))
    hint = f" --bug {args.bug}" if args.bug else ""
    print(f"trace written to {out}; run it with: sanspi replay {out}{hint}")
    return 1


def _stats(args, table) -> int:
    from sanspi.bench.proofcost import proof_cost

    cost = proof_cost((4, 6, 8), args.timeout, progress=progress, transitions=table)
    clear_progress()
    rows = [(f"whole proof (induction), {cost['induction']['checks']} checks", cost["induction"]),
            (f"unbounded proof (induction, any size), {cost['unbounded']['checks']} checks", cost["unbounded"])]
    rows += [(f"BMC K={b['k']}", b) for b in cost["bmc"]]
    print("| proof | seconds | verdict |")
    print("|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['seconds']:.1f} | {r['verdict']} |")
    return 0 if all(r["verdict"] in ("all proved", "none found") for _, r in rows) else 1


def _self_test(args) -> int:
    from sanspi.proof.induction import prove
    from sanspi.proof.seeded import SEEDED_BUGS

    backend, cfg, bounds = _proof(args)
    print(f"seeded bugs, {backend.name} proof ({bounds}):")
    print()
    print("| seeded bug | clause | caught by | seconds |")
    print("|---|---|---|---|")
    survivors = 0
    for bug in SEEDED_BUGS:
        start = time.perf_counter()
        with bug.applied() as table:
            results = prove(cfg, transitions=table, timeout_ms=int(args.timeout * 1000), progress=progress,
                            backend=backend)
        clear_progress()
        caught = caught_by(results)
        unknown = sum(r.verdict == "unknown" for r in results)
        survivors += not caught
        note = f" ({unknown} unknown)" if unknown else ""
        print(f"| {bug.name} | {bug.clause} | {caught or 'NONE: the bug survived'}{note} | "
              f"{time.perf_counter() - start:.1f} |")
    print()
    print(f"{len(SEEDED_BUGS) - survivors} of {len(SEEDED_BUGS)} seeded bugs caught")
    return 1 if survivors else 0


def caught_by(results) -> str:
    """Every check with a counterexample the concrete model confirms, in the
    table's order ("frame" last), comma-separated; empty if none."""
    failed = {r.check for r in results if r.verdict == "counterexample" and r.cex and r.cex.confirmed}
    return ", ".join(c for c in dict.fromkeys(r.check for r in results) if c in failed)


#: A trace file larger than this is refused before it is parsed.
MAX_TRACE_BYTES = 64 << 20


def run_replay(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from sanspi.model.trace import TraceError, loads, render, replay

    path = Path(args.trace)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_TRACE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_TRACE_BYTES:
        raise UsageError(f"{path}: larger than {MAX_TRACE_BYTES >> 20} MiB, not a trace sanspi wrote")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start}), not a trace") from None
    try:
        recorded = loads(text)
    except TraceError as exc:
        raise UsageError(f"{path}: {exc}") from None
    bug = _bug(args.bug)
    with (bug.applied() if bug else nullcontext(None)) as table:
        try:
            again = replay(recorded, transitions=table)
        except (KeyError, TypeError) as exc:
            raise UsageError(f"{path}: a step's arguments do not fit its transition ({exc})") from None
        print(render(again))
    if not again.valid:
        print(f"not reproduced: {again.note}")
        return 1
    mismatches = [n + 1 for n, (a, b) in enumerate(zip(recorded.steps, again.steps))
                  if a.status is not None and (a.status, a.result, a.broken) != (b.status, b.result, b.broken)]
    if len(again.steps) < len(recorded.steps) and not mismatches:
        mismatches = [len(again.steps)]
    if mismatches:
        print(f"not reproduced: step {mismatches[0]} differs from the recorded outcome")
        return 1
    v = again.violation
    print(f"reproduced: step {v[0] + 1} breaks {', '.join(v[1])}" if v else "reproduced: no violation")
    return 0
