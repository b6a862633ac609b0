"""mutmut's only test (``make mutation``): the CI campaign of ``sanspi
conform --provider sim`` (the ``ci`` profile, a fixed seed), on the software
provider as mutmut changed it.

It fails on any divergence from the model, on a step that goes otherwise
than in the clean campaign, and on any argument outside its type answered
otherwise than the spec says. It lives here, not under tests/, so ``make
test`` never runs it.

The campaign is recorded once on the clean provider (``record``, run by
mutation/run.py when it builds the stage) and each mutant replays its steps
through the World (conform/shrink.py's ``replay``: the same calls and the
same comparisons after every step). Up to a mutant's first divergence its
live campaign would make exactly these calls, because the state machine
draws its steps from the model's state, which a provider cannot change; the
replay only skips Hypothesis's generation, four fifths of a campaign's time.
With SANSPI_MUTATION_LIVE=1 (``run.py --live``) the test runs the campaign
itself instead.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from sanspi.conform import campaign
from sanspi.conform.argtypes import check_argument_types
from sanspi.conform.campaign import PROFILES, model_config, run_campaign
from sanspi.conform.providers import SIM_CAPABILITIES, load_factory
from sanspi.conform.shrink import replay
from sanspi.model.state import Config

SEED = 0
PAGES = Config().pages
SIZES = PROFILES["ci"]
RECORDING = Path(__file__).with_name("campaign.pickle")


def _campaign(factory, on_world=None):
    """The CI campaign; ``on_world`` sees every example's World (the
    campaign shows each only to its own bookkeeping, so it is added there)."""
    make_machine = campaign.make_machine
    if on_world is not None:
        campaign.make_machine = lambda f, cfg, keep: make_machine(f, cfg, lambda w: (on_world(w), keep(w)))
    try:
        return run_campaign(factory, model_config(SIM_CAPABILITIES, PAGES), SIZES["examples"], SIZES["steps"],
                            seed=SEED, use_database=False, shrink=False, name="sim")
    finally:
        campaign.make_machine = make_machine


def record(path: Path = RECORDING) -> int:
    """Run the campaign on the clean provider and write every example's
    steps to ``path``; the number of steps."""
    worlds = []
    result = _campaign(load_factory("sim", PAGES), worlds.append)
    if not result.ok:
        raise SystemExit(f"the clean provider diverges: {result.divergence}")
    examples = [list(w.log) for w in worlds if w.log]
    path.write_bytes(pickle.dumps(examples))
    return sum(map(len, examples))


def test_ci_campaign_finds_no_divergence():
    factory = load_factory("sim", PAGES)
    _, wrong = check_argument_types(factory)
    assert not wrong, "arguments outside their type: " + "; ".join(wrong)
    if os.environ.get("SANSPI_MUTATION_LIVE") == "1":
        result = _campaign(factory)
        assert result.ok, result.divergence
        return
    examples = pickle.loads(RECORDING.read_bytes())
    assert sum(map(len, examples)) >= SIZES["examples"], "the recording is too short to be the CI campaign"
    cfg = model_config(SIM_CAPABILITIES, PAGES)
    for i, steps in enumerate(examples):
        out = replay(factory, cfg, steps)
        assert not out.diverged, f"example {i + 1}: {out.message}"
        assert [(s.name, s.status) for s in out.log] == [(s.name, s.status) for s in steps], \
            f"example {i + 1} went otherwise than in the clean campaign at step {len(out.log)}"
