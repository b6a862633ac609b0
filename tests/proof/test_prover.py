"""The proofs run in the tests, so CI fails when an invariant breaks, and the
prover is shown able to fail: every seeded bug yields a counterexample."""

from __future__ import annotations

import pytest

from sanspi.model.trace import dumps, loads, replay
from sanspi.proof.bmc import BMC_CONFIG, bmc
from sanspi.proof.induction import COUNTEREXAMPLE, PROOF_CONFIG, UNKNOWN, prove
from sanspi.proof.report import render_counterexample, render_table
from sanspi.proof.seeded import BY_NAME, SEEDED_BUGS
from sanspi.spec.clauses import load_index


@pytest.fixture(scope="module")
def proof():
    return prove(PROOF_CONFIG)


@pytest.mark.clause("REG-07", "CACHE-04", "CONN-02", "RDMA-06", "RDMA-07", "RDEREG-02", "DEREG-02")
def test_every_invariant_is_inductive(proof):
    failed = [(r.check, r.transition, r.shape, r.verdict) for r in proof if not r.ok]
    assert failed == []
    checks = {r.check for r in proof}
    assert {"frame", "write_needs_permission", "unique_ids", "pinned"} <= checks
    assert {r.transition for r in proof} >= {"init", "rdma_write", "free", "cache_callback"}


def test_table_names_every_transition(proof):
    from sanspi.model.transitions import TRANSITIONS

    text = render_table(proof)
    rows = text.split("\n\n")[0].splitlines()[1:]
    assert len(rows) == len({r.check for r in proof})
    assert all(" ok" in row and "CEX" not in row and "??" not in row for row in rows)
    legend = text.split("\n\n")[1]
    assert all(f"={name}" in legend for name in TRANSITIONS)


@pytest.mark.parametrize("bug", SEEDED_BUGS, ids=[b.name for b in SEEDED_BUGS])
def test_seeded_bug_yields_counterexample(bug):
    assert bug.clause in load_index()
    with bug.applied() as table:
        results = prove(PROOF_CONFIG, transitions=table)
    found = [r for r in results if r.verdict == COUNTEREXAMPLE]
    assert found, f"{bug.name} survived the proof"
    assert all(r.cex.confirmed for r in found), "a counterexample the concrete model does not confirm"
    assert not [r for r in results if r.verdict == UNKNOWN]
    text = render_counterexample(found[0])
    assert f"counterexample to {found[0].check}" in text and "confirmed on the concrete model" in text


def test_seeded_bugs_leave_the_model_as_it_was():
    bug = BY_NAME["no-permission-check"]
    with bug.applied():
        pass
    assert all(r.ok for r in prove(PROOF_CONFIG, transitions={"rdma_write": _transition("rdma_write")}))


def _transition(name):
    from sanspi.model.transitions import TRANSITIONS

    return TRANSITIONS[name]


def test_bmc_finds_nothing_in_the_model():
    result = bmc(4, BMC_CONFIG)
    assert result.verdict == "none found" and len(result.per_depth) == 4


@pytest.mark.clause("ACC-02")
def test_bmc_trace_of_a_seeded_bug_replays():
    bug = BY_NAME["no-permission-check"]
    with bug.applied() as table:
        result = bmc(6, BMC_CONFIG, transitions=table)
        assert result.verdict == "counterexample"
        trace = result.trace
        assert trace.violation is not None and trace.violation[0] == len(trace.steps) - 1
        # the file round-trips and replays to the same outcome on the buggy model
        again = replay(loads(dumps(trace)), transitions=table)
        assert [(s.status, s.result, s.broken) for s in again.steps] == [
            (s.status, s.result, s.broken) for s in trace.steps]
    # the correct model does not reproduce it
    fixed = replay(loads(dumps(trace)))
    assert fixed.violation is None
