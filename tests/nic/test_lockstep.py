"""The NIC lockstep's own check, on stand-in NICs (tests/nic/fake.py): it
finds each named deviation of a NIC that has it, shrunk to a minimal trace,
passes only when every named one is found, and fails on any other."""

from __future__ import annotations

import pytest

from sanspi.nic.access import DEVIATIONS, AccessModel
from sanspi.nic.lockstep import Divergence, replay, run_nic
from tests.nic.fake import FakeNic

BUDGET = dict(examples=30, steps=15, seed=0)
RXE_LIKE = frozenset(DEVIATIONS)


@pytest.fixture(scope="module")
def rxe_like():
    """One campaign on a NIC with every known deviation (shared: it takes seconds)."""
    return run_nic(lambda: FakeNic(RXE_LIKE), **BUDGET)


@pytest.mark.clause("RDMA-05", "RREG-02")
def test_a_nic_with_the_known_deviations_passes_and_each_is_found_with_a_minimal_trace(rxe_like):
    result = rxe_like
    assert result.ok, (result.unknown, result.missing)
    found = {f.deviation: f for f in result.found}
    assert set(found) == set(DEVIATIONS)
    window = found["window-range"].trace
    # register, allocate, bind over a sub-range, one access outside the window inside its MR
    assert sorted(s.name for s in window[:2]) == ["alloc_mw", "reg_mr"], [str(s) for s in window]
    assert [s.name for s in window[2:]] == ["bind", "access"], [str(s) for s in window]
    assert "the NIC did it, the model refused it (range rule)" in found["window-range"].divergence
    # each trace shows its own deviation only: the window's MR is of the window's PD
    mr, bind_ = (next(s for s in window if s.name == n) for n in ("reg_mr", "alloc_mw"))
    assert mr.args["pd"] == bind_.args["pd"]
    bind = found["bind-mr-pd"].trace
    assert sorted(s.name for s in bind) == ["alloc_mw", "bind", "reg_mr"] and bind[-1].name == "bind", \
        [str(s) for s in bind]
    assert "(pd rule)" in found["bind-mr-pd"].divergence


@pytest.mark.clause("RDMA-05")
def test_a_minimal_trace_replays_to_the_same_deviation(rxe_like):
    f = next(f for f in rxe_like.found if f.deviation == "window-range")
    with pytest.raises(Divergence) as caught:
        replay(lambda: FakeNic(RXE_LIKE), [(s.name, s.args) for s in f.trace], f.under)
    assert caught.value.explained_by == ("window-range",)
    replay(lambda: FakeNic(RXE_LIKE), [(s.name, s.args) for s in f.trace], f.under | {"window-range"})


@pytest.mark.clause("RDMA-05", "RREG-02")
def test_a_nic_that_keeps_every_rule_fails_because_the_known_deviations_are_missing():
    result = run_nic(lambda: FakeNic(frozenset()), **BUDGET)
    assert not result.ok and result.unknown is None
    assert set(result.missing) == set(DEVIATIONS)


class QpBlind(AccessModel):
    """A NIC on which a type-2 window answers on every QP of its PD."""

    def refusal(self, conn, need, key, addr, length):
        why = super().refusal(conn, need, key, addr, length)
        return "" if why == "qp" else why


@pytest.mark.clause("RREG-02")
def test_any_other_divergence_fails_the_run_with_its_trace():
    # twice the budget: the final round, which looks for anything else, is the one that must see it
    result = run_nic(lambda: FakeNic(RXE_LIKE, QpBlind), **{**BUDGET, "examples": 60})
    assert not result.ok
    assert result.unknown is not None and "(qp rule)" in result.unknown, result.unknown
    assert result.unknown_trace[-1].name == "access" and len(result.unknown_trace) <= 5
