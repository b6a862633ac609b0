"""The proofs run in the tests, so CI fails when an invariant breaks, and the
prover is shown able to fail: every seeded bug yields a counterexample."""

from __future__ import annotations

from pathlib import Path

import pytest

import sanspi.model.transitions as T
from sanspi.model.constants import MEM_READ, MEM_WRITE, WSAECONNRESET
from sanspi.model.machine import PropertyViolation, make_args
from sanspi.model.transitions import Sge
from sanspi.proof.cli import caught_by
from sanspi.model.trace import dumps, loads, replay
from sanspi.model.constants import OK
from sanspi.model.state import Config
from sanspi.proof.bmc import BMC_CONFIG, bmc, reach
from sanspi.proof.induction import (
    COUNTEREXAMPLE,
    PROOF_CONFIG,
    UNBOUNDED,
    UNBOUNDED_CONFIG,
    UNKNOWN,
    check_transition,
    prove,
)
from sanspi.proof.symbolic import Shape
from sanspi.proof.report import render_counterexample, render_table
from sanspi.proof.seeded import BY_NAME, SEEDED_BUGS
from sanspi.spec.clauses import load_index

from ..model.conftest import ready_model, reg


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


@pytest.fixture(scope="module")
def unbounded_proof():
    return prove(UNBOUNDED_CONFIG, backend=UNBOUNDED)


@pytest.mark.clause("REG-07", "REG-09", "CACHE-04", "CONN-02", "RDMA-06", "XFER-03")
def test_every_invariant_is_inductive_at_every_size(unbounded_proof, proof):
    failed = [(r.check, r.transition, r.shape, r.verdict) for r in unbounded_proof if not r.ok]
    assert failed == []
    # the same table as the bounded proof, with more buffer counts (max_sge 4, not 2)
    assert {(r.check, r.transition) for r in unbounded_proof} == {(r.check, r.transition) for r in proof}
    assert {r.shape for r in unbounded_proof if r.transition == "rdma_write"} == {
        f"host={h}, buffers={n}" for h in (0, 1) for n in range(UNBOUNDED_CONFIG.max_sge + 2)}


#: A seeded bug of each kind (a wrong helper, a wrapped transition, wrong
#: ops, a wrong code path of one call, a bug that needs two pages), each
#: with one instance it breaks and the check that must catch it there.
UNBOUNDED_CATCHES = [
    ("send-no-length-check", "send", Shape(0, 2), "send_fits_receive"),
    ("refcount-not-decremented", "deregister_memory", Shape(1), "refcount_accounting"),
    ("one-byte-too-many", "rdma_write", Shape(0, 3), "frame"),
    ("send-sources-need-write", "send", Shape(1, 4), "send_needs_permission"),
    ("range-checks-first-page", "register_rdma_memory", Shape(0), "pinned"),
]


@pytest.mark.parametrize("bug, name, shape, check", UNBOUNDED_CATCHES, ids=[c[0] for c in UNBOUNDED_CATCHES])
def test_the_unbounded_proof_catches_seeded_bugs(bug, name, shape, check):
    """The unbounded proof refutes a seeded bug with a counterexample at a
    small size, which the concrete model replays."""
    from sanspi.model.invariants import STATE_INVARIANTS, STEP_PROPERTIES
    from sanspi.proof.report import render_counterexample

    cfg = UNBOUNDED.config(UNBOUNDED_CONFIG)
    with BY_NAME[bug].applied() as table:
        results = check_transition(cfg, table[name], shape, STATE_INVARIANTS, STEP_PROPERTIES, 20_000, UNBOUNDED)
    assert not [r for r in results if r.verdict == UNKNOWN]
    [r] = [r for r in results if r.check == check]
    assert r.verdict == COUNTEREXAMPLE and r.cex.confirmed
    sizes = r.cex.config
    assert sizes.max_sge == UNBOUNDED_CONFIG.max_sge and max(sizes.pages, sizes.slots, sizes.sockets) <= 3
    assert "registration(s) a host" in render_counterexample(r)


def readme_caught_by() -> dict[str, str]:
    """The "caught by" column of the README's seeded-bug table."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("| seeded bug | clause | caught by |")[1].split("\n\n")[0]
    rows = [line.strip("|").split("|") for line in section.splitlines()[2:]]
    return {cells[0].strip(): cells[2].strip() for cells in rows}


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
    # what `sanspi prove --self-test` prints is what the README says
    assert caught_by(results) == readme_caught_by()[bug.name]


def test_the_properties_call_no_helper_of_the_transitions():
    """A property stated through a transition's helper agrees with that
    helper when it is wrong; the seeded helper bugs rely on this."""
    import sanspi.model.invariants as inv

    borrowed = [name for name, v in vars(inv).items()
                if callable(v) and not isinstance(v, type) and getattr(v, "__module__", "") == T.__name__]
    assert borrowed == []


@pytest.mark.clause("XFER-03")
def test_a_send_past_the_receive_is_a_violation_of_the_model():
    """With send's length check removed the concrete model writes 100 bytes
    into an 8-byte receive; the model's own checks refuse that step."""
    m = ready_model()
    src, dst = reg(m, host=0, flags=MEM_READ), reg(m, host=1, flags=MEM_WRITE)
    m.call("post_recv", host=1, sock=0, handle=dst, addr=0, length=8)
    m.call("app_write", host=0, addr=0, length=100, seed=1)  # bytes that show where they land
    send = make_args("send", host=0, sock=0, sges=[Sge(length=100, addr=0, handle=src)])
    with BY_NAME["send-no-length-check"].applied():
        with pytest.raises(PropertyViolation, match="send_fits_receive, frame"):
            m.outcomes("send", send)
    assert [s.status for s in m.outcomes("send", send)] == [WSAECONNRESET]


def test_seeded_bugs_leave_the_model_as_it_was():
    bug = BY_NAME["no-permission-check"]
    with bug.applied():
        pass
    assert all(r.ok for r in prove(PROOF_CONFIG, transitions={"rdma_write": _transition("rdma_write")}))


def _transition(name):
    from sanspi.model.transitions import TRANSITIONS

    return TRANSITIONS[name]


@pytest.mark.clause("RDMA-06")
def test_bmc_reaches_a_successful_rdma_write():
    """BMC's unrolling reaches the model's deep behaviour, not only its
    refusals: a successful RDMA write needs eight steps from Init (two
    startups, a connection, memory on both hosts, a local and an RDMA
    registration, the write), on the smallest instance that has them."""
    smallest = Config(pages=1, slots=1, sockets=1, max_sge=1, max_startups=1)
    result = reach(8, "rdma_write", OK, smallest)
    assert result.verdict == "reached"
    trace = result.trace  # replayed on the concrete model
    assert trace.valid and len(trace.steps) == 8
    assert (trace.steps[-1].transition, trace.steps[-1].status) == ("rdma_write", OK)
    assert trace.steps[-1].result >= 1 and trace.violation is None


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
