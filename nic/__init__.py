"""The NIC facts the verbs provider rests on: a small model of the verbs
access check and its lockstep check against rxe (``sanspi nic``)."""
