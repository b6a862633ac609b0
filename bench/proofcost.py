"""Proof cost: the whole induction proof, the unbounded proof and BMC at a
few bounds, timed by the same calls ``sanspi prove --stats`` makes."""

from __future__ import annotations

import time
from typing import Callable

from sanspi.proof.bmc import BMC_CONFIG, bmc
from sanspi.proof.induction import BOUNDED, PROOF_CONFIG, UNBOUNDED, UNBOUNDED_CONFIG, prove


def proof_cost(ks: tuple[int, ...] = (4, 6, 8), timeout_s: float = 20.0, whole: bool = True,
               progress: Callable[[str], None] | None = None, transitions: dict | None = None) -> dict:
    """Seconds and verdicts; ``whole=False`` skips both induction proofs
    (bounded and unbounded); ``transitions`` is another transition table
    (a seeded bug's)."""
    out: dict = {"bmc": []}
    if whole:
        for key, cfg, backend in (("induction", PROOF_CONFIG, BOUNDED), ("unbounded", UNBOUNDED_CONFIG, UNBOUNDED)):
            start = time.perf_counter()
            results = prove(cfg, transitions=transitions, timeout_ms=int(timeout_s * 1000), progress=progress,
                            backend=backend)
            out[key] = {"checks": len(results), "seconds": time.perf_counter() - start,
                        "verdict": "all proved" if all(r.ok for r in results) else "FAILED"}
    for k in ks:
        r = bmc(k, BMC_CONFIG, transitions=transitions, timeout_ms=int(timeout_s * 1000) * 6, progress=progress)
        out["bmc"].append({"k": k, "seconds": r.seconds, "verdict": r.verdict})
    return out
