"""The oracle's own check: every seeded-bug variant of the software provider
must be killed by the campaign (a survivor is a blind spot)."""

from __future__ import annotations

import pytest

from sanspi.conform.campaign import model_config, run_campaign
from sanspi.conform.mutants import MUTANT_EXAMPLES, MUTANTS
from sanspi.impl.interface import Capabilities
from sanspi.conform.providers import SIM_CAPABILITIES
from sanspi.spec.clauses import load_index

CFG = model_config(SIM_CAPABILITIES, pages=4)


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_is_killed(mutant):
    assert mutant.clause in load_index()
    result = run_campaign(lambda: mutant.pair(SIM_CAPABILITIES, 4, 4096), CFG, examples=MUTANT_EXAMPLES, steps=40, seed=0,
                          use_database=False, shrink=False)
    assert not result.ok, f"{mutant.name} ({mutant.what}) survived {result.examples} examples"
    assert result.trace, "a divergence comes with its shrunk trace"


def test_at_least_fifteen_mutants():
    assert len(MUTANTS) >= 15
    assert len({m.clause for m in MUTANTS}) >= 12
