"""The test HypoFuzz fuzzes for ``sanspi conform --workers N``: the lockstep
state machine on the provider the ``SANSPI_FUZZ_*`` variables name
(conform/fuzz.py). Not a test of this project: nothing collects it but
``hypothesis fuzz``, which ``sanspi conform`` starts with those variables set.
"""

from sanspi.conform.fuzz import fuzz_test_case

TestLockstep = fuzz_test_case()
