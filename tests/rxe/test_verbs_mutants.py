"""The oracle's own check on real RDMA: every seeded-bug variant of the verbs
provider (conform/verbs_mutants.py) must be killed by the lockstep campaign
on rxe, within a small budget; and the unmutated provider, run on the same
budget, must not diverge at all, or a kill could be the rig's fault.

A kill that came with an exception the provider swallowed (``errors``) does
not count: an override broken by a change in impl/verbs*.py answers WSAEINVAL
and would look like a kill.
"""

from __future__ import annotations

import pytest

from sanspi.spec.clauses import load_index

pytestmark = pytest.mark.rxe
clause = pytest.mark.clause

#: The verbs mutants by name, listed here so that collecting this file on the
#: host imports nothing of the verbs provider; the first test keeps this list
#: and conform/verbs_mutants.py in step.
NAMES = (
    "verbs-window-kept-after-dereg",
    "verbs-callback-keeps-mr",
    "verbs-error-state-not-entered",
    "verbs-failed-completion-as-refusal",
    "verbs-table-ignores-flags",
    "verbs-dereg-revokes-every-reference",
    "verbs-remote-access-widened",
)


@pytest.fixture(scope="module")
def vm(lab):
    """conform.verbs_mutants, once the rxe device is known to be up."""
    from sanspi.conform import verbs_mutants

    return verbs_mutants


def test_every_verbs_mutant_is_listed_and_overrides_real_methods(vm):
    from sanspi.impl.verbs import VerbsProvider

    assert NAMES == tuple(m.name for m in vm.VERBS_MUTANTS)
    assert len({m.clause for m in vm.VERBS_MUTANTS}) == len(NAMES)  # one clause each
    index = load_index()
    for m in vm.VERBS_MUTANTS:
        assert m.clause in index, m.name
        replaced = [k for k in vars(m.cls) if not k.startswith("__")]
        assert replaced, f"{m.name} replaces nothing"
        # a method renamed in impl/verbs*.py would leave the override dead (the
        # mutant then equals the provider and survives): say which, in the
        # provider or in the resource class a mutant swaps in
        missing = [k for k in replaced if not callable(getattr(VerbsProvider, k, None))]
        assert not missing, f"{m.name} overrides {missing}, which VerbsProvider no longer has"
        for k in replaced:
            swapped, base = vars(m.cls)[k], getattr(VerbsProvider, k)
            if isinstance(swapped, type):
                assert issubclass(swapped, base), f"{m.name}: {k} is not a {base.__name__}"
                methods = [n for n in vars(swapped) if not n.startswith("__")]
                gone = [n for n in methods if not callable(getattr(base, n, None))]
                assert methods and not gone, f"{m.name} overrides {base.__name__}.{gone or methods}"


@clause("RDEREG-02", "CACHE-04", "CONN-01", "RDMA-08", "REG-05")
def test_unmutated_provider_survives_the_same_budget(vm, record_property):
    """The control: the budget every mutant gets, spent in full on the
    provider as it is, with no divergence and no swallowed exception."""
    from sanspi.conform.mutants import MUTANT_SEEDS

    h = vm.hunt_verbs(vm.CONTROL)
    record_property("examples", h.examples)
    record_property("seconds", round(h.seconds, 1))
    assert not h.killed, f"the unmutated verbs provider diverged: {h.result.divergence}"
    assert h.errors == (), h.errors
    assert h.examples >= vm.VERBS_MUTANT_EXAMPLES * len(MUTANT_SEEDS)


@clause("RDEREG-02", "CACHE-04", "CONN-01", "RDMA-08", "REG-05")
@pytest.mark.parametrize("name", NAMES)
def test_verbs_mutant_is_killed(vm, name, record_property):
    m = vm.BY_NAME[name]
    h = vm.hunt_verbs(m)
    record_property("examples", h.examples)
    record_property("seconds", round(h.seconds, 1))
    record_property("divergence", h.result.divergence)
    print(f"{name} ({m.clause}): {'killed' if h.killed else 'SURVIVED'} after {h.examples} examples, "
          f"{h.seconds:.1f} s: {h.result.divergence}")
    assert h.killed, (f"{name} ({m.what}) survived {h.examples} examples under every seed: "
                      f"the campaign does not see {m.clause} broken on rxe")
    assert h.result.trace, "a divergence comes with its trace"
    assert h.errors == (), f"killed only through exceptions the provider swallowed: {h.errors}"
