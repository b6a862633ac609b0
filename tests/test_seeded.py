"""A campaign is the same campaign wherever it runs: Hypothesis's ``ci``
profile, which Hypothesis loads by itself when ``CI`` is set, must not
change what sanspi generates (sanspi/seeded.py)."""

import pytest
from hypothesis import settings

from sanspi.conform.fuzz import Target, fuzz_test_case
from sanspi.conform.campaign import model_config, run_campaign
from sanspi.impl.interface import Capabilities
from sanspi.impl.sim import sim_pair

CAPS = Capabilities()
CFG = model_config(CAPS, pages=4)


@pytest.fixture
def ci_profile():
    """The profile Hypothesis loads by itself under CI, for one test."""
    before = settings._current_profile
    settings.load_profile("ci")
    assert settings().derandomize  # what made CI's campaigns weaker
    yield
    settings.load_profile(before)


def campaign(seed: int) -> tuple:
    """What a short campaign did: its steps and every outcome and behaviour it reached, counted."""
    result = run_campaign(lambda: sim_pair(CAPS, pages=4), CFG, 8, 12, seed=seed, use_database=False)
    assert result.ok, result.divergence
    return result.steps, sorted(result.coverage.outcomes.items()), sorted(result.coverage.behaviour.items())


def test_a_seed_means_the_same_campaign_under_the_ci_profile(ci_profile):
    """Seeds 1 and 2 give two campaigns under the ``ci`` profile (it derandomizes, which outranks a seed), and
    each is the campaign the same seed gives under the ``default`` profile."""
    under_ci = {seed: campaign(seed) for seed in (1, 2)}
    settings.load_profile("default")
    under_default = {seed: campaign(seed) for seed in (1, 2)}
    assert under_ci[1] != under_ci[2]
    assert under_ci == under_default


def test_the_fuzz_target_is_random_and_keeps_its_database_under_the_ci_profile(ci_profile, tmp_path, monkeypatch):
    """HypoFuzz passes over a derandomized test or one whose database is not the default one: both held under
    CI, where HypoFuzz then had nothing to fuzz and stopped with an IndexError."""
    env = Target(provider="sim", pages=4, steps=10, results=tmp_path / "out", database=str(tmp_path / "db")).environment()
    case = fuzz_test_case(env)
    assert not case.settings.derandomize
    assert case.settings.database is not None
    assert case.settings.database == settings().database
