"""The oracle's own check: every seeded-bug variant of the software provider
must be killed by the campaign (a survivor is a blind spot)."""

from __future__ import annotations

import pytest

from sanspi.conform.mutants import MUTANTS, hunt
from sanspi.spec.clauses import load_index


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_is_killed(mutant):
    assert mutant.clause in load_index()
    result = hunt(mutant)
    assert not result.ok, f"{mutant.name} ({mutant.what}) survived {result.examples} examples under every seed"
    assert result.trace, "a divergence comes with its trace"


def test_at_least_fifteen_mutants():
    assert len(MUTANTS) >= 15
    assert len({m.clause for m in MUTANTS}) >= 12
