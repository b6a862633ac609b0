"""The NIC facts the verbs provider rests on, checked on rxe against the
access model (nic/): the campaign must find, by itself, exactly the two
deviations of rxe 6.1 the model names, each shrunk to a short trace, and
nothing else (``sanspi nic`` is the same run with its report)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.rxe


@pytest.mark.clause("RREG-02", "RDEREG-02", "ACC-02", "RDMA-05")
def test_rxe_keeps_every_access_rule_but_its_two_named_deviations(lab):
    from sanspi.nic.access import DEVIATIONS
    from sanspi.nic.cli import CI_EXAMPLES, CI_STEPS, render
    from sanspi.nic.lockstep import run_nic
    from sanspi.nic.rxe import RxeNic

    result = run_nic(RxeNic, CI_EXAMPLES, CI_STEPS, seed=0)
    text = render(result, {"examples": CI_EXAMPLES, "steps": CI_STEPS, "seed": 0})
    print(text)
    assert result.ok, text
    assert {f.deviation for f in result.found} == set(DEVIATIONS), text
    for f in result.found:
        assert len(f.trace) <= 4 and f.trace[-1].name in ("access", "bind"), text
