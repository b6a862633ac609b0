"""Figures out of the raw measurements: every figure is a ratio of two
things measured in the same run (same process, or the same guest session),
never an absolute time compared across runs. The table, the JSON
(``sanspi-bench/1``) and the plot."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
from pathlib import Path
from typing import Any

SCHEMA = "sanspi-bench/1"
MIB = 1 << 20

#: The goals: (part, figure key) -> [(comparison, bound, from this size on,
#: or only at this size)]. Issue 15 for the registration cache (a hit
#: against a registration made and released, in the same run), issue 8 for
#: the rest.
GOALS: dict[tuple[str, str], list[tuple[str, float, int | None, int | None]]] = {
    ("regcache", "hit-local-vs-reg-dereg"): [(">=", 20.0, None, MIB)],
    ("regcache", "hit-rdma-vs-reg-dereg"): [(">=", 3.0, None, MIB), (">=", 10.0, None, 64 * MIB)],
    ("bandwidth", "write-vs-ib_write_bw"): [(">=", 0.9, MIB, None)],
    ("bandwidth", "read-vs-ib_read_bw"): [(">=", 0.9, MIB, None)],
    ("conformance", "model-share-rxe"): [("<=", 0.10, None, None)],
}


def size_name(n: int | None) -> str:
    if n is None:
        return ""
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} B"


def _goal(part: str, key: str, size: int | None) -> tuple[str | None, dict | None]:
    for op, bound, lo, only in GOALS.get((part, key), ()):
        if only is not None and size != only:
            continue
        if lo is not None and (size is None or size < lo):
            continue
        return op, {"op": op, "bound": bound}
    return None, None


def figure(part: str, key: str, text: str, value: float, reference: float, unit: str,
           better: str, size: int | None = None) -> dict:
    """One figure; ``better`` says which way the ratio should go: "higher"
    (ratio = value / reference, e.g. bandwidth) or "cheaper" (ratio =
    reference / value: how many times cheaper ``value`` is) or "lower"
    (ratio = value / reference, a share or a slowdown)."""
    ratio = reference / value if better == "cheaper" else value / reference
    op, goal = _goal(part, key, size)
    met = None
    if goal is not None:
        met = ratio >= goal["bound"] if op == ">=" else ratio <= goal["bound"]
    return {"part": part, "key": key, "figure": text, "size": size, "value": value,
            "reference": reference, "unit": unit, "ratio": ratio, "better": better,
            "goal": goal, "met": met}


#: What a cache hit cannot go below on this lab, whatever the provider's
#: Python does, from the parts of ``bench.verbs.hit_parts`` measured alone:
#: every hit checks the connection's state, a byte of its failure notice (a
#: failure at the peer is written there, CONN-01, REG-01); an RDMA hit also
#: needs a fresh key, so one bind (CACHE-03), posted (one system call,
#: inside which rxe binds) and its completion read.
LOCAL_FLOOR_TEXT = "WSPRegisterMemory cache hit's floor (state check) vs ibv_reg_mr+dereg"
RDMA_FLOOR_TEXT = "WSPRegisterRdmaMemory cache hit's floor (state check + bind post + completion) vs ibv_reg_mr+dereg"


def rdma_hit_floor_us(parts: dict) -> float:
    return parts["bind_post_us"] + parts["bind_completion_us"] + parts["conn_state_us"]


def figures(parts: dict) -> list[dict]:
    out: list[dict] = []
    for row in parts.get("regcache", {}).get("rows", []):
        s = row["size"]
        out += [
            figure("regcache", "hit-local-vs-reg_mr", "WSPRegisterMemory cache hit vs fresh ibv_reg_mr",
                   row["hit_local_us"], row["reg_mr_us"], "us", "cheaper", s),
            figure("regcache", "hit-local-vs-reg-dereg", "WSPRegisterMemory cache hit vs ibv_reg_mr+dereg",
                   row["hit_local_us"], row["reg_dereg_us"], "us", "cheaper", s),
            figure("regcache", "hit-rdma-vs-reg_mr", "WSPRegisterRdmaMemory cache hit vs fresh ibv_reg_mr",
                   row["hit_rdma_us"], row["reg_mr_rdma_us"], "us", "cheaper", s),
            figure("regcache", "hit-rdma-vs-reg-dereg", "WSPRegisterRdmaMemory cache hit vs ibv_reg_mr+dereg",
                   row["hit_rdma_us"], row["reg_dereg_us"], "us", "cheaper", s),
        ]
        split = row.get("hit_parts", {})
        if "bind_post_us" in split:
            out += [figure("regcache", "local-hit-floor-vs-reg-dereg", LOCAL_FLOOR_TEXT,
                           split["conn_state_us"], row["reg_dereg_us"], "us", "cheaper", s),
                    figure("regcache", "rdma-hit-floor-vs-reg-dereg", RDMA_FLOOR_TEXT,
                           rdma_hit_floor_us(split), row["reg_dereg_us"], "us", "cheaper", s)]
    bw = parts.get("bandwidth", {})
    ref = {(r["op"], r["size"]): r for r in bw.get("perftest", [])}
    for row in bw.get("provider", []):
        r = ref.get((row["op"], row["size"]))
        if r is not None:
            out.append(figure("bandwidth", f"{row['op']}-vs-ib_{row['op']}_bw",
                              f"WSPRdma{row['op'].capitalize()} vs ib_{row['op']}_bw",
                              row["mib_per_s"], r["mib_per_s"], "MiB/s", "higher", row["size"]))
    lat = parts.get("latency")
    if lat:
        out.append(figure("latency", "write-vs-ib_write_lat", "8-byte WSPRdmaWrite (to completion) vs "
                          "ib_write_lat t_typical", lat["provider"]["median_us"], lat["perftest"]["typical_us"],
                          "us", "lower", 8))
    runs = {r["provider"]: r for r in parts.get("conformance", {}).get("runs", [])}
    for prov, r in runs.items():
        out.append(figure("conformance", f"model-share-{prov}", f"model's share of a lockstep step ({prov})",
                          r["model_s"], r["step_s"], "s", "lower"))
    if "sim" in runs and "rxe" in runs:
        out.append(figure("conformance", "steps-rxe-vs-sim", "lockstep steps/s, rxe vs sim",
                          runs["rxe"]["steps_per_s"], runs["sim"]["steps_per_s"], "steps/s", "higher"))
    proof = parts.get("proof")
    if proof and "unbounded" in proof:
        out.append(figure("proof", "unbounded-vs-induction", "the unbounded proof vs the whole proof",
                          proof["unbounded"]["seconds"], proof["induction"]["seconds"], "s", "lower"))
    if proof and "induction" in proof:
        for b in proof["bmc"]:
            out.append(figure("proof", f"bmc-{b['k']}-vs-induction", f"BMC K={b['k']} vs the whole proof",
                              b["seconds"], proof["induction"]["seconds"], "s", "lower"))
    elif proof and len(proof["bmc"]) > 1:
        first = proof["bmc"][0]
        for b in proof["bmc"][1:]:
            out.append(figure("proof", f"bmc-{b['k']}-vs-bmc-{first['k']}", f"BMC K={b['k']} vs K={first['k']}",
                              b["seconds"], first["seconds"], "s", "lower"))
    return out


def machine(guest: dict | None = None) -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "guest": guest}


def document(parts: dict, quick: bool, seconds: float, guest: dict | None = None) -> dict:
    return {"schema": SCHEMA, "quick": quick, "seconds": seconds, "machine": machine(guest),
            "parts": parts, "figures": figures(parts)}


class SchemaError(ValueError):
    pass


def validate(doc: Any) -> None:
    """Raise SchemaError unless ``doc`` is a sanspi-bench/1 document whose
    figures are all finite positive ratios."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise SchemaError(f"not a {SCHEMA} document")
    for key, kind in (("quick", bool), ("seconds", (int, float)), ("machine", dict), ("parts", dict),
                      ("figures", list)):
        if not isinstance(doc.get(key), kind):
            raise SchemaError(f"{key!r} missing or not {kind}")
    for f in doc["figures"]:
        for key in ("part", "key", "figure", "unit", "better"):
            if not isinstance(f.get(key), str):
                raise SchemaError(f"figure {f.get('key')!r}: {key!r} missing")
        for key in ("value", "reference", "ratio"):
            v = f.get(key)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise SchemaError(f"figure {f['key']!r}: {key} {v!r} is not a positive number")
        if f["better"] not in ("higher", "lower", "cheaper"):
            raise SchemaError(f"figure {f['key']!r}: better {f['better']!r}")
        if f.get("goal") is not None and not isinstance(f.get("met"), bool):
            raise SchemaError(f"figure {f['key']!r}: a goal without a verdict")


def _num(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def table(doc: dict) -> str:
    lines = ["| part | figure | size | measured | reference | ratio | goal |", "|---|---|---|---|---|---|---|"]
    for f in doc["figures"]:
        ratio = f"{_num(f['ratio'])}x cheaper" if f["better"] == "cheaper" else f"{f['ratio']:.3g}"
        goal = ""
        if f["goal"]:
            goal = f"{f['goal']['op']} {f['goal']['bound']:g}: {'met' if f['met'] else 'NOT met'}"
        lines.append(f"| {f['part']} | {f['figure']} | {size_name(f['size'])} | {_num(f['value'])} {f['unit']} | "
                     f"{_num(f['reference'])} {f['unit']} | {ratio} | {goal} |")
    return "\n".join(lines)


def write_json(doc: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def plot(doc: dict, path: Path) -> Path:
    """One PNG: a panel per part that has data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = doc["parts"]
    panels = [p for p in ("regcache", "bandwidth", "latency", "conformance", "proof") if parts.get(p)]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.6 * max(1, len(panels)), 4), squeeze=False)
    for ax, name in zip(axes[0], panels):
        data = parts[name]
        if name == "regcache":
            rows = data["rows"]
            xs = [r["size"] for r in rows]
            for key, label in (("reg_mr_us", "ibv_reg_mr"), ("reg_dereg_us", "reg_mr+dereg_mr"),
                               ("hit_local_us", "hit WSPRegisterMemory"), ("hit_rdma_us", "hit WSPRegisterRdmaMemory")):
                ax.plot(xs, [r[key] for r in rows], marker="o", label=label)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set(title="registration", xlabel="buffer bytes", ylabel="us (median)")
        elif name == "bandwidth":
            for src, style in (("provider", "-"), ("perftest", "--")):
                for op in ("write", "read"):
                    rows = [r for r in data[src] if r["op"] == op]
                    if rows:
                        ax.plot([r["size"] for r in rows], [r["mib_per_s"] for r in rows], style, marker="o",
                                label=f"{'WSPRdma' + op.capitalize() if src == 'provider' else 'ib_' + op + '_bw'}")
            ax.set_xscale("log", base=2)
            ax.set(title="RDMA bandwidth (rxe, TCG)", xlabel="message bytes", ylabel="MiB/s")
        elif name == "latency":
            ax.bar(["WSPRdmaWrite", "ib_write_lat"], [data["provider"]["median_us"], data["perftest"]["typical_us"]])
            ax.set(title="8-byte RDMA write", ylabel="us")
        elif name == "conformance":
            runs = data["runs"]
            labels = [r["provider"] for r in runs]
            ax.bar(labels, [r["steps_per_s"] for r in runs])
            for i, r in enumerate(runs):
                ax.annotate(f"model {100 * r['model_share']:.0f}%", (i, r["steps_per_s"]), ha="center", va="bottom")
            ax.set_ylim(0, 1.2 * max(r["steps_per_s"] for r in runs))
            ax.set(title="lockstep throughput", ylabel="steps/s")
        elif name == "proof":
            whole = [k for k in ("induction", "unbounded") if k in data]
            labels = whole + [f"BMC {b['k']}" for b in data["bmc"]]
            secs = [data[k]["seconds"] for k in whole] + [b["seconds"] for b in data["bmc"]]
            ax.bar(labels, secs)
            ax.set(title="proof cost", ylabel="s")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    m = doc["machine"]
    fig.suptitle(f"sanspi bench{' --quick' if doc['quick'] else ''}: {m['cpus']} cpus, kernel {m['kernel']}"
                 + (f", guest {m['guest'].get('kernel')}" if m.get("guest") else "") + f", {m['date']}",
                 fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


BEGIN, END = "<!-- sanspi bench: begin -->", "<!-- sanspi bench: end -->"


def summary(doc: dict) -> str:
    """The machine line and the table, as the README shows them."""
    m = doc["machine"]
    guest = m.get("guest") or {}
    where = (f"guest kernel {guest.get('kernel')} on {guest.get('device')} under TCG, 1 vCPU" if guest else "no guest")
    return (f"`sanspi bench{' --quick' if doc['quick'] else ''}`, {m['date']}: {m['cpus']} cores ({m['cpu']}), "
            f"host kernel {m['kernel']}, {where}; {doc['seconds']:.0f} s in all.\n\n" + table(doc))


def record(doc: dict, readme: Path) -> None:
    """Replace what stands between the README's bench markers."""
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SchemaError(f"{readme} has no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{summary(doc)}\n{END}{tail}")
