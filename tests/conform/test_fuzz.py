"""Long campaigns (conform/fuzz.py): HypoFuzz over several worker processes
on the software provider, one example database per provider, a divergence
found by a worker reported like `sanspi conform`'s and replayed from the
database by every later run, the pytest fixture's replay, and bad input."""

from __future__ import annotations

import pickle
import subprocess
import sys
import time

import pytest

from sanspi.cli import main
from sanspi.conform.campaign import model_config, run_campaign
from sanspi.conform.exampledb import DatabaseError, describe, namespace, open_database
from sanspi.conform.fuzz import read_records
from sanspi.conform.mutants import BY_NAME
from sanspi.conform.providers import SIM_CAPABILITIES, open_provider
from sanspi.impl.sim import sim_pair

CFG = model_config(SIM_CAPABILITIES, pages=4)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private $SANSPI_CACHE: the shared example database stays out of it."""
    monkeypatch.setenv("SANSPI_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def mutant_pair(name):
    return lambda: BY_NAME[name].pair(SIM_CAPABILITIES, CFG.pages, CFG.page_size)


def test_each_provider_and_configuration_has_its_own_place(cache):
    assert namespace("sim", CFG) == namespace("sim", model_config(SIM_CAPABILITIES, pages=4))
    assert namespace("sim", CFG) != namespace("mutant:gather-reversed", CFG)
    assert namespace("sim", CFG) != namespace("sim", model_config(SIM_CAPABILITIES, pages=8))
    assert namespace("pkg.mod:make pair/../x", CFG).startswith("pkg.mod_make_pair_.._x-")
    assert describe(None, "sim", CFG) == str(cache / "hypothesis" / namespace("sim", CFG))
    assert str(open_database(None, "sim", CFG).path) == describe(None, "sim", CFG)
    assert describe("redis://db.example:6379/0", "sim", CFG).endswith(f"(keys sanspi:{namespace('sim', CFG)}:*)")


def test_a_redis_that_cannot_be_reached_is_one_line():
    with pytest.raises(DatabaseError) as err:
        open_database("redis://127.0.0.1:1/0", "sim", CFG)
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.clause("RDMA-06")
def test_another_providers_run_keeps_a_stored_divergence(cache):
    """Every provider runs the same machine (one Hypothesis key), and
    Hypothesis deletes a stored example that passes: a run on sim must not
    throw away the divergence a mutant's run stored."""
    mutant = mutant_pair("write-one-byte-too-many")
    found = run_campaign(mutant, CFG, 500, 40, name="mutant:write-one-byte-too-many", shrink=False)
    assert not found.ok
    sim = run_campaign(lambda: sim_pair(SIM_CAPABILITIES, CFG.pages), CFG, 5, 40, name="sim")
    assert sim.ok
    again = run_campaign(mutant, CFG, 1, 40, name="mutant:write-one-byte-too-many", shrink=False)
    assert again.found_example == 1
    assert [str(s) for s in again.trace] == [str(s) for s in found.trace]


def no_local_access_check():
    """A module-level factory: the fixture keys its database place by it."""
    return BY_NAME["no-local-access-check"].pair(SIM_CAPABILITIES, 8, 4096)


@pytest.mark.clause("ACC-03")
def test_the_fixture_replays_a_divergence_it_found_before(sanspi_conformance, cache):
    """A mutant the campaign takes dozens of examples to kill is killed at
    the first example of the next run: the stored one, replayed first."""
    with pytest.raises(pytest.fail.Exception) as first:
        sanspi_conformance(no_local_access_check, examples=1000, steps=40)
    assert "diverges from the model" in str(first.value)
    stored = cache / "hypothesis"
    assert any(p.is_file() for p in stored.rglob("*")), "the divergence was not stored"
    with pytest.raises(pytest.fail.Exception) as again:
        sanspi_conformance(no_local_access_check, examples=1, steps=40)
    assert "found in example 1;" in str(again.value)
    assert str(again.value).split("shrunk trace:")[1].split("report:")[0] == \
        str(first.value).split("shrunk trace:")[1].split("report:")[0]


def test_two_workers_fuzz_the_software_provider(cache, tmp_path, capsys):
    """`--workers 2` on sim: HypoFuzz's two processes both ran examples, the
    report sums them, and the run stopped by itself."""
    out = tmp_path / "out"
    start = time.monotonic()
    status = main(["conform", "--provider", "sim", "--workers", "2", "--minutes", "0.75", "--out", str(out)])
    took = time.monotonic() - start
    assert status == 0, capsys.readouterr()
    records = read_records(out / "fuzz")
    assert len(records) == 2 and all(r.examples > 0 and r.steps > 0 for r in records)
    assert len({r.worker for r in records}) == 2
    saved = pickle.loads((out / "fuzz-result.pickle").read_bytes())["result"]
    assert saved.ok and saved.steps == sum(r.steps for r in records)
    assert saved.examples == sum(r.examples for r in records)
    assert len(saved.coverage.outcomes) > 10
    report = (out / "conform.md").read_text()
    assert "'workers': 2" in report and "result: no divergence" in report
    assert took < 0.75 * 60 + 120, f"the run took {took:.0f} s"


@pytest.mark.clause("RDMA-06")
def test_a_workers_divergence_is_reported_and_replayed_from_the_database(cache, tmp_path, capsys):
    """A seeded bug found by one of two workers: the run stops at once, the
    report is `sanspi conform`'s (shrunk trace, runnable test); a fresh plain
    campaign replays the worker's very example first; a fresh long campaign
    replays it too, without starting HypoFuzz."""
    spec = "mutant:write-one-byte-too-many"
    out, db = tmp_path / "out", tmp_path / "db"
    start = time.monotonic()
    status = main(["conform", "--provider", spec, "--workers", "2", "--minutes", "5", "--database", str(db),
                   "--out", str(out)])
    took = time.monotonic() - start
    assert status == 1
    assert took < 5 * 60 - 60, f"the run did not stop at the divergence ({took:.0f} s)"
    report = (out / "conform.md").read_text()
    assert "DIVERGENCE: host" in report and "shrunk in" in report
    saved = pickle.loads((out / "fuzz-result.pickle").read_bytes())["result"]
    assert saved.minimal and 0 < len(saved.trace) <= saved.found_steps
    [test_file] = out.glob("test_divergence_*.py")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 1 and "Divergence" in run.stdout, run.stdout[-2000:]

    # both workers may have diverged before the run stopped, each storing
    # its example: the replay is one of theirs, whichever sorts first
    found = [[str(s) for s in r.trace] for r in read_records(out / "fuzz") if r.divergence]
    assert found
    factory, _, cfg = open_provider(spec, None)
    replayed = run_campaign(factory, cfg, 1, 40, database=open_database(str(db), spec, cfg), name=spec,
                            shrink=False)
    assert replayed.found_example == 1
    assert [str(s) for s in replayed.trace] in found

    capsys.readouterr()
    again = tmp_path / "again"
    assert main(["conform", "--provider", spec, "--workers", "2", "--minutes", "5", "--database", str(db),
                 "--out", str(again)]) == 1
    assert "replayed, HypoFuzz not started" in capsys.readouterr().out
    assert not (again / "fuzz").exists()


@pytest.mark.parametrize("argv, says", [
    (["--workers", "0"], "at least 1"),
    (["--workers", "two"], "a number of processes"),
    (["--workers", "2", "--examples", "5"], "--examples does not go with --workers"),
    (["--workers", "2", "--seed", "1"], "--seed does not go with --workers"),
    (["--workers", "2", "--mutants"], "--mutants does not go with --workers"),
    (["--workers", "2", "--minutes", "0"], "--minutes must be a positive number"),
    (["--minutes", "5"], "--minutes is for long campaigns"),
    (["--dashboard", "9999"], "--dashboard is for long campaigns"),
    (["--workers", "1", "--database", "redis://127.0.0.1:1/0"], "cannot reach Redis"),
    (["--database", "redis://127.0.0.1:1/0", "--examples", "1"], "cannot reach Redis"),
])
def test_bad_long_campaign_arguments_are_one_line(capsys, cache, tmp_path, argv, says):
    assert main(["conform", "--provider", "sim", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
