"""Running a Hypothesis state machine under sanspi's own settings and seed.

A campaign's verdict, its coverage and its seed must not depend on where it
runs. Hypothesis loads its built-in ``ci`` profile by itself when the
environment looks like CI (``CI`` set, among others): that profile sets
``derandomize=True`` (which outranks a forced seed, so every top-up round
replays the same examples) and ``database=None``. A CI machine then ran a
different, weaker campaign than a workstation did with the same seed, and
HypoFuzz refused to fuzz a derandomized test. So every run sanspi makes
starts from Hypothesis's ``default`` profile, never from the active one.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import hypothesis
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test


def own_settings(**values: Any) -> settings:
    """Settings from Hypothesis's ``default`` profile (not the active one,
    which may be ``ci``), random rather than derandomized, with ``values``."""
    return settings(settings.get_profile("default"), **{"derandomize": False, **values})


@contextlib.contextmanager
def forced_seed(seed: int | None) -> Iterator[None]:
    """Hypothesis's global seed (``--hypothesis-seed``) set to ``seed`` for
    the block; None leaves generation random."""
    saved = hypothesis.core.global_force_seed
    hypothesis.core.global_force_seed = seed
    try:
        yield
    finally:
        hypothesis.core.global_force_seed = saved


def run_seeded(machine: type[RuleBasedStateMachine], seed: int | None, **values: Any) -> None:
    """``machine`` run as a test under ``own_settings(**values)`` and ``seed``."""
    with forced_seed(seed):
        run_state_machine_as_test(machine, settings=own_settings(**values))
