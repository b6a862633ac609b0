"""``sanspi bench``: the performance figures, each a ratio measured within
one run. The verbs figures (registration cache, bandwidth, latency) and the
conformance throughput run where rxe is: on a host without RDMA, inside the
lab's loopback guest through ``sanspi lab run --rwdir`` (one guest session
for all of them); the proof cost runs on the host."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from sanspi.cli import UsageError, clear_progress, progress

PARTS = ("regcache", "bandwidth", "latency", "conformance", "proof")
GUEST_PARTS = ("regcache", "bandwidth", "latency", "conformance")
KIB, MIB = 1 << 10, 1 << 20

#: Sizes and counts: the full run (about 15 minutes here) and --quick.
FULL = dict(reg_sizes=[4 * KIB, 64 * KIB, MIB, 16 * MIB, 64 * MIB], bw_sizes=[4 * KIB, 64 * KIB, MIB, 4 * MIB],
            ops=("write", "read"), lat_reps=500, conform={"sim": (30, 30), "rxe": (8, 30)}, bmc=(4, 6, 8))
QUICK = dict(reg_sizes=[4 * KIB, MIB, 64 * MIB], bw_sizes=[MIB], ops=("write", "read"), lat_reps=200,
             conform={"sim": (10, 20), "rxe": (3, 20)}, bmc=(4,))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="performance: registration cache, RDMA bandwidth and latency against perftest, "
                       "conformance throughput, proof cost (JSON, PNG and a table)")
    p.add_argument("--quick", action="store_true", help="a small subset (a few minutes)")
    p.add_argument("--only", metavar="PART[,PART...]", help=f"run only these parts: {', '.join(PARTS)}")
    p.add_argument("--bmc", metavar="K[,K...]", help="BMC bounds for the proof cost (default 4,6,8; --quick 4)")
    p.add_argument("--seed", type=int, default=1, help="Hypothesis seed of the conformance runs (default 1)")
    p.add_argument("--record", action="store_true", help="write the table into README.md's Performance section")
    p.add_argument("--out", default="reports", help="folder for bench.json and bench.png (default reports)")
    p.add_argument("--inside", metavar="PATH", help=argparse.SUPPRESS)  # the guest's half: raw parts to PATH
    p.set_defaults(run=run)


def _parts(text: str | None) -> list[str]:
    if text is None:
        return list(PARTS)
    asked = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in asked if t not in PARTS]
    if bad or not asked:
        raise UsageError(f"--only takes parts from {', '.join(PARTS)}, not {text!r}")
    return [p for p in PARTS if p in asked]


def _bounds(text: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    if text is None:
        return default
    try:
        ks = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise UsageError(f"--bmc takes bounds like 4,6,8, not {text!r}") from None
    if not ks or any(not 1 <= k <= 30 for k in ks):
        raise UsageError(f"--bmc bounds must be 1 to 30, not {text!r}")
    return ks


def run(args: argparse.Namespace) -> int:
    parts = _parts(args.only)
    sizes = QUICK if args.quick else FULL
    ks = _bounds(args.bmc, sizes["bmc"])
    if args.inside:
        _write(Path(args.inside), _guest(parts, sizes, args.seed))
        return 0
    start = time.perf_counter()
    measured: dict = {}
    guest = None
    wanted = [p for p in parts if p in GUEST_PARTS]
    if wanted:
        from sanspi.conform.cli import _have_rdma_device

        if _have_rdma_device() or "SANSPI_LAB_TOPOLOGY" in os.environ:
            got = _guest(wanted, sizes, args.seed)
        else:
            got = _through_lab(args, wanted)
            if got is None:
                return 1
        guest = got.pop("guest")
        measured.update(got)
    if "proof" in parts:
        from sanspi.bench.proofcost import proof_cost

        measured["proof"] = proof_cost(ks, progress=progress)
        clear_progress()
    return _finish(measured, args, guest, time.perf_counter() - start)


def _finish(measured: dict, args: argparse.Namespace, guest: dict | None, seconds: float) -> int:
    from sanspi.bench import report

    doc = report.document(measured, args.quick, seconds, guest)
    report.validate(doc)
    out = Path(args.out)
    files = [report.write_json(doc, out / "bench.json"), report.plot(doc, out / "bench.png")]
    m = doc["machine"]
    print(f"sanspi bench{' --quick' if args.quick else ''}: {m['cpus']} cpus ({m['cpu']}), kernel {m['kernel']}"
          + (f", guest kernel {guest['kernel']} on {guest['device']} (TCG)" if guest else "")
          + f", {m['date']}, {seconds:.0f} s")
    print()
    print(report.table(doc))
    print()
    missed = [f for f in doc["figures"] if f["met"] is False]
    for f in missed:
        at = f" at {report.size_name(f['size'])}" if f["size"] else ""
        print(f"goal not met: {f['figure']}{at}: {f['ratio']:.3g} "
              f"(goal {f['goal']['op']} {f['goal']['bound']:g})")
    if args.record:
        from sanspi.lab.cli import repo_root

        try:
            report.record(doc, repo_root() / "README.md")
        except report.SchemaError as exc:
            print(f"sanspi bench: not recorded: {exc}", file=sys.stderr)
            return 1
        files.append(repo_root() / "README.md")
    print("written: " + ", ".join(str(f) for f in files))
    return 0


def _guest(parts: list[str], sizes: dict, seed: int) -> dict:
    """The parts that need rxe, measured here (inside the guest)."""
    import platform

    from sanspi.bench import verbs

    out: dict = {"guest": {"kernel": os.environ.get("SANSPI_LAB_KERNEL", platform.release()),
                           "device": os.environ.get("SANSPI_LAB_DEVICE", "rxe0"),
                           "topology": os.environ.get("SANSPI_LAB_TOPOLOGY", "native")}}
    # The registration cache first, in a guest nothing else has run in yet:
    # right after the latency and bandwidth parts (perftest and 4 MiB
    # transfers) a cache hit cost about 1.5x as much, ibv_reg_mr about the
    # same, so the ratios fell by a third (2026-12-06, README).
    if "regcache" in parts:
        progress("registration cache")
        out["regcache"] = {"rows": verbs.regcache(sizes["reg_sizes"], quick=sizes is QUICK)}
    if "latency" in parts:
        progress("latency")
        out["latency"] = verbs.latency(sizes["lat_reps"])
    if "bandwidth" in parts:
        progress("bandwidth")
        out["bandwidth"] = verbs.bandwidth(sizes["bw_sizes"], sizes["ops"], quick=sizes is QUICK)
    if "conformance" in parts:
        from sanspi.bench.conformance import throughput

        runs = []
        for provider, (examples, steps) in sizes["conform"].items():
            progress(f"conformance on {provider}")
            runs.append(throughput(provider, examples, steps, seed))
        out["conformance"] = {"runs": runs}
    clear_progress()
    return out


def _through_lab(args: argparse.Namespace, parts: list[str]) -> dict | None:
    """No RDMA device here: the guest's half runs inside the lab's loopback
    guest and writes its raw figures into a folder the guest may write."""
    from sanspi.cli import main as sanspi_main

    print("sanspi bench: no RDMA device on this host; the verbs figures run in the lab (sanspi lab run)",
          file=sys.stderr)
    folder = (Path(args.out) / "bench-guest").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "parts.json"
    path.unlink(missing_ok=True)
    inner = ["sanspi", "bench", "--only", ",".join(parts), "--seed", str(args.seed), "--inside", str(path)]
    if args.quick:
        inner.append("--quick")
    status = sanspi_main(["lab", "run", "--rwdir", str(folder), "--", *inner])
    if status != 0 or not path.is_file():
        print(f"sanspi bench: the guest's half failed (exit {status}); its output is above", file=sys.stderr)
        return None
    got = json.loads(path.read_text())
    path.unlink()
    return got


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
