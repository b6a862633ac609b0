"""The command line: bad input gets one line and exit status 2, never a traceback."""

from __future__ import annotations

import json

import pytest

from sanspi.cli import main
from sanspi.model.trace import Trace, TraceStep, dumps, replay
from sanspi.model.transitions import ConnArgs, StartupArgs
from sanspi.model.state import Config


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, says", [
    (["prove", "--bmc", "0"], "--bmc takes a bound"),
    (["prove", "--timeout", "-1"], "--timeout must be positive"),
    (["prove", "--bug", "no-such-bug"], "no seeded bug named"),
    (["replay", "/nonexistent/trace.json"], "cannot read"),
])
def test_bad_arguments_one_line(capsys, argv, says):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("content, says", [
    ("not json", "not JSON"),
    ("{}", "not a sanspi-trace/1 trace"),
    (json.dumps({"format": "sanspi-trace/1", "config": {}, "steps": [{"transition": "fly", "args": {}}]}),
     "unknown transition 'fly'"),
    (json.dumps({"format": "sanspi-trace/1", "config": {}, "steps": [{"transition": "connect", "args": {}}]}),
     "malformed trace"),
    (json.dumps({"format": "sanspi-trace/1", "config": {"pages": "x"}, "steps": []}), "malformed trace"),
    (json.dumps({"format": "sanspi-trace/1", "config": {"pages": 10**9}, "steps": []}), "config sizes beyond"),
    (json.dumps({"format": "sanspi-trace/1", "config": {}, "steps": 5}), "steps is not a list"),
    (json.dumps({"format": "sanspi-trace/1", "config": {},
                 "steps": [{"transition": "alloc", "args": {"host": 0, "page": [1], "npages": 1}}]}), "page = [1]"),
    (json.dumps({"format": "sanspi-trace/1", "config": {},
                 "steps": [{"transition": "alloc", "args": {"host": 0, "page": 1.5, "npages": 1}}]}), "page = 1.5"),
    (b"\xff\xfe not text", "not UTF-8"),
])
def test_bad_trace_files(capsys, tmp_path, content, says):
    path = tmp_path / "t.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, out, err = run(capsys, "replay", str(path))
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_huge_trace_file_is_refused_before_it_is_read(capsys, tmp_path, monkeypatch):
    from sanspi.proof import cli as proof_cli

    monkeypatch.setattr(proof_cli, "MAX_TRACE_BYTES", 1000)
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"format": "sanspi-trace/1", "config": {}, "steps": []}) + " " * 2000)
    code, out, err = run(capsys, "replay", str(path))
    assert code == 2 and "larger than" in err and "Traceback" not in err


def test_replay_reproduces_a_recorded_trace(capsys, tmp_path):
    trace = replay(Trace(Config(), (TraceStep("startup_ex", StartupArgs(0, 2, 2)),
                                    TraceStep("startup_ex", StartupArgs(1, 2, 2)),
                                    TraceStep("connect", ConnArgs(0)))))
    path = tmp_path / "ok.json"
    path.write_text(dumps(trace))
    code, out, _ = run(capsys, "replay", str(path))
    assert code == 0 and "reproduced: no violation" in out and "step 3: connect(conn=0)" in out
    # a recorded outcome the model does not give is reported, not hidden
    data = json.loads(dumps(trace))
    data["steps"][0]["expect"]["status"] = 10092
    path.write_text(json.dumps(data))
    code, out, _ = run(capsys, "replay", str(path))
    assert code == 1 and "not reproduced: step 1 differs" in out
    # a step that cannot be taken
    data["steps"] = data["steps"][2:]
    path.write_text(json.dumps(data))
    code, out, _ = run(capsys, "replay", str(path))
    assert code == 1 and "not enabled" in out


def test_list_bugs(capsys):
    from sanspi.proof.seeded import SEEDED_BUGS

    code, out, _ = run(capsys, "prove", "--list-bugs")
    assert code == 0 and len(out.strip().splitlines()) == len(SEEDED_BUGS) >= 8


def test_spec_table_has_no_gaps(capsys):
    code, out, _ = run(capsys, "spec", "--tests", "tests")
    assert code == 0, out[-2000:]
    assert "60 clauses; 60 with tests" in out and "GAP:" not in out


def test_conform_require_coverage_fails_a_run_that_reached_too_little(capsys, tmp_path):
    argv = ["conform", "--provider", "sim", "--examples", "2", "--steps", "3", "--seed", "1",
            "--out", str(tmp_path)]
    assert main(argv) == 0  # no divergence: without the flag, coverage is reported only
    assert main([*argv, "--require-coverage"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "were not reached" in err[0]
    assert "coverage: " in (tmp_path / "conform.md").read_text()


@pytest.mark.parametrize("profile, at_least", [("ci", 1800), ("long", 5000 * 100 / 5)])
def test_a_campaign_through_the_lab_gets_a_deadline_it_can_finish_in(profile, at_least, tmp_path, monkeypatch):
    """`conform --provider rxe` on a host without RDMA runs in the lab; the lab's deadline is the whole
    campaign's at a slow 5 steps/s (top-up rounds included), never below lab run's default: that default
    (1800 s) would cut a `long` campaign (5,000 examples of 100 steps) off with no report."""
    import sanspi.cli
    from sanspi.conform import cli as conform_cli

    asked: list[list[str]] = []
    real_main = sanspi.cli.main
    monkeypatch.setattr(sanspi.cli, "main", lambda argv: asked.append(argv) or 0 if argv[:2] == ["lab", "run"]
                        else real_main(argv))
    monkeypatch.setattr(conform_cli, "_have_rdma_device", lambda: False)
    monkeypatch.delenv("SANSPI_LAB_TOPOLOGY", raising=False)
    monkeypatch.setenv("SANSPI_CACHE", str(tmp_path / "cache"))
    assert main(["conform", "--provider", "rxe", "--profile", profile, "--out", str(tmp_path / "out")]) == 0
    (argv,) = asked
    assert float(argv[argv.index("--timeout") + 1]) >= at_least
    assert argv.index("--timeout") < argv.index("--")
