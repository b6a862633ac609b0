"""sanspi bench on the host: the parts that need no rxe, at tiny sizes, and
the figures, schema, table and CLI around them. No test asserts an
absolute time: only that figures are positive ratios, in the schema, and
judged against their goals the right way round."""

from __future__ import annotations

import json
import math

import pytest

from sanspi.bench import report
from sanspi.bench.conformance import throughput
from sanspi.bench.proofcost import proof_cost
from sanspi.bench.verbs import _parse_bw, _parse_lat
from sanspi.cli import main

MIB = 1 << 20


def _doc(parts: dict) -> dict:
    doc = report.document(parts, quick=True, seconds=1.0)
    report.validate(doc)
    return doc


def test_conformance_throughput_on_sim_is_a_share():
    run = throughput("sim", examples=2, steps=5, seed=0)
    assert run["steps"] > 0 and run["steps_per_s"] > 0
    assert 0 < run["model_s"] < run["step_s"] <= run["wall_s"]
    doc = _doc({"conformance": {"runs": [run]}})
    [share] = [f for f in doc["figures"] if f["key"] == "model-share-sim"]
    assert 0 < share["ratio"] < 1 and share["goal"] is None


def test_proof_cost_at_small_bounds():
    cost = proof_cost(ks=(1, 2), whole=False)
    assert "induction" not in cost
    assert [b["k"] for b in cost["bmc"]] == [1, 2]
    assert all(b["verdict"] == "none found" and b["seconds"] > 0 for b in cost["bmc"])
    doc = _doc({"proof": cost})
    assert [f["key"] for f in doc["figures"]] == ["bmc-2-vs-bmc-1"]


def _regrow(size, hit, reg):
    return {"size": size, "reps": 5, "reg_mr_us": reg, "reg_mr_rdma_us": reg, "reg_dereg_us": 2 * reg,
            "hit_local_us": hit, "hit_local_pair_us": 2 * hit, "hit_rdma_us": 10 * hit, "hit_rdma_pair_us": 20 * hit}


def test_figures_are_ratios_judged_against_their_goals():
    parts = {
        "regcache": {"rows": [_regrow(4096, 1.0, 100.0), _regrow(MIB, 1.0, 400.0), _regrow(64 * MIB, 100.0, 400.0)]},
        "bandwidth": {"provider": [{"op": "write", "size": MIB, "mib_per_s": 5.0},
                                   {"op": "read", "size": 4 * MIB, "mib_per_s": 19.0},
                                   {"op": "write", "size": 4096, "mib_per_s": 1.0}],
                      "perftest": [{"op": "write", "size": MIB, "mib_per_s": 10.0},
                                   {"op": "read", "size": 4 * MIB, "mib_per_s": 20.0},
                                   {"op": "write", "size": 4096, "mib_per_s": 10.0}]},
        "latency": {"provider": {"median_us": 50.0}, "perftest": {"typical_us": 10.0}},
    }
    by = {(f["key"], f["size"]): f for f in _doc(parts)["figures"]}
    local = by[("hit-local-vs-reg-dereg", MIB)]
    assert local["ratio"] == pytest.approx(800.0) and local["met"] is True  # 800x cheaper >= 20
    rdma = by[("hit-rdma-vs-reg-dereg", MIB)]
    assert rdma["ratio"] == pytest.approx(80.0) and rdma["goal"]["bound"] == 3 and rdma["met"] is True
    big = by[("hit-rdma-vs-reg-dereg", 64 * MIB)]  # the same figure has a bound of its own at 64 MiB
    assert big["ratio"] == pytest.approx(0.8) and big["goal"]["bound"] == 10 and big["met"] is False
    assert by[("hit-local-vs-reg-dereg", 4096)]["goal"] is None  # the goals are at their sizes only
    assert by[("hit-local-vs-reg-dereg", 64 * MIB)]["goal"] is None
    assert by[("hit-local-vs-reg_mr", MIB)]["goal"] is None  # against ibv_reg_mr alone: no goal
    assert by[("write-vs-ib_write_bw", MIB)]["met"] is False  # 0.5 < 0.9
    assert by[("read-vs-ib_read_bw", 4 * MIB)]["met"] is True  # 0.95, and the goal holds above 1 MiB too
    assert by[("write-vs-ib_write_bw", 4096)]["goal"] is None
    assert by[("write-vs-ib_write_lat", 8)]["ratio"] == pytest.approx(5.0)
    table = report.table(_doc(parts))
    assert "| 800x cheaper | >= 20: met |" in table and "| 0.8x cheaper | >= 10: NOT met |" in table


def test_the_hit_floors_are_the_state_check_and_the_bind():
    """The floor figures: the state check for a local hit; the bind's post, its completion and the state check
    summed for an RDMA hit; each against ibv_reg_mr + dereg. A row without the bind's parts (an older run) has
    none."""
    row = _regrow(MIB, 1.0, 400.0)
    row["hit_parts"] = {"bind_post_us": 100.0, "bind_completion_us": 20.0, "conn_state_us": 40.0, "window_us": 130.0}
    old = _regrow(4096, 1.0, 100.0)
    figures = _doc({"regcache": {"rows": [row, old]}})["figures"]
    floor = [f for f in figures if f["key"] == "rdma-hit-floor-vs-reg-dereg"]
    assert [(f["size"], f["value"], f["reference"]) for f in floor] == [(MIB, 160.0, 800.0)]
    assert floor[0]["ratio"] == pytest.approx(5.0) and floor[0]["goal"] is None
    local = [f for f in figures if f["key"] == "local-hit-floor-vs-reg-dereg"]
    assert [(f["size"], f["value"], f["ratio"]) for f in local] == [(MIB, 40.0, 20.0)]


@pytest.mark.parametrize("spoil, says", [
    (lambda d: d.update(schema="other/1"), "not a sanspi-bench/1"),
    (lambda d: d["figures"][0].update(ratio=0.0), "not a positive number"),
    (lambda d: d["figures"][0].update(ratio=math.inf), "not a positive number"),
    (lambda d: d["figures"][0].update(goal={"op": ">=", "bound": 1}, met=None), "without a verdict"),
    (lambda d: d.pop("machine"), "'machine'"),
])
def test_validate_refuses_a_bad_document(spoil, says):
    doc = _doc({"latency": {"provider": {"median_us": 5.0}, "perftest": {"typical_us": 10.0}}})
    spoil(doc)
    with pytest.raises(report.SchemaError, match=says):
        report.validate(doc)


def test_cli_writes_json_png_and_table(capsys, tmp_path):
    code = main(["bench", "--only", "proof", "--bmc", "1,2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    doc = json.loads((tmp_path / "bench.json").read_text())
    report.validate(doc)
    proof = doc["parts"]["proof"]
    assert set(doc["parts"]) == {"proof"} and proof["induction"]["verdict"] == "all proved"
    assert proof["unbounded"]["verdict"] == "all proved" and proof["unbounded"]["checks"] > proof["induction"]["checks"]
    assert {f["key"] for f in doc["figures"]} == {"unbounded-vs-induction", "bmc-1-vs-induction", "bmc-2-vs-induction"}
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| proof | BMC K=2 vs the whole proof |" in out
    assert "| proof | the unbounded proof vs the whole proof |" in out


def test_record_replaces_only_between_the_markers(tmp_path):
    doc = _doc({"latency": {"provider": {"median_us": 5.0}, "perftest": {"typical_us": 10.0}}})
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{report.BEGIN}\nold table\n{report.END}\nafter\n")
    report.record(doc, readme)
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# x\n\nbefore\n") and text.endswith("\nafter\n")
    assert "| latency |" in text and "0.5" in text
    readme.write_text("no markers\n")
    with pytest.raises(report.SchemaError, match="markers"):
        report.record(doc, readme)


@pytest.mark.parametrize("argv, says", [
    (["bench", "--only", "nope"], "--only takes parts"),
    (["bench", "--only", ","], "--only takes parts"),
    (["bench", "--bmc", "0"], "--bmc bounds must be 1 to 30"),
    (["bench", "--bmc", "four"], "--bmc takes bounds"),
])
def test_bad_input_is_one_line(capsys, argv, says):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_option_value_is_one_line(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["bench", "--seed", "x"])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and "invalid int value" in err and len(err.strip().splitlines()) == 1


BW_OUT = """ #bytes     #iterations    BW peak[MB/sec]    BW average[MB/sec]   MsgRate[Mpps]
 1048576    50               32.46              31.59  \t\t   0.000032
"""
LAT_OUT = """ #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]    t_stdev[usec]
 8       500          3051.79        8115.17      4005.64  \t       4273.46     \t789.39 \t\t8021.55
"""


def test_perftest_output_is_read():
    assert _parse_bw(BW_OUT) == {"size": 1048576, "iterations": 50, "mib_per_s": 31.59}
    assert _parse_lat(LAT_OUT)["typical_us"] == 4005.64
    with pytest.raises(RuntimeError, match="no bandwidth line"):
        _parse_bw("Couldn't connect to 10.77.0.1:18515\n")
