"""What anyone in the guest can see of the rxe device: ``rdma resource``.

The hostile peer's strongest case is a peer that knows every key's index:
in one guest ``rdma resource show mr`` lists every MR's lkey and rkey (an
rkey is ``index << 8 | 8 random bits``, lab/RXE-FACTS.md), so the attack
reads them there; across two guests the attacker cannot, and the driver in
the victim's guest reads them and hands them over (a stronger attacker than
a real one). The same tool gives the counts the leak check compares.
"""

from __future__ import annotations

import json
import subprocess

import attrs

#: The resource counts ``rdma resource show`` prints per device. Memory
#: windows have no count there; a leaked window keeps its PD, whose count
#: then stays up (ibv_dealloc_pd fails with EBUSY).
COUNTED = ("pd", "cq", "qp", "mr", "ctx")


class RdmaToolError(Exception):
    """The ``rdma`` tool failed or is missing: one line for the user."""


def _rdma(*args: str) -> str:
    try:
        done = subprocess.run(["rdma", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RdmaToolError(f"rdma {' '.join(args)}: {exc}") from None
    if done.returncode != 0:
        raise RdmaToolError(f"rdma {' '.join(args)}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done.stdout


def counts() -> dict[str, int]:
    """Per resource, the total over every device (``rdma resource show``)."""
    total = dict.fromkeys(COUNTED, 0)
    for line in _rdma("resource", "show").splitlines():
        words = line.split()
        for name, value in zip(words, words[1:]):
            if name in total and value.isdigit():
                total[name] += int(value)
    return total


@attrs.frozen
class SeenMr:
    """One MR as ``rdma resource show mr`` lists it."""

    lkey: int
    rkey: int  # 0: no remote right
    length: int
    pdn: int

    @property
    def index(self) -> int:
        return self.lkey >> 8


def mrs() -> list[SeenMr]:
    out = []
    for mr in json.loads(_rdma("-j", "resource", "show", "mr") or "[]"):
        out.append(SeenMr(int(str(mr.get("lkey", "0")), 16), int(str(mr.get("rkey", "0")), 16),
                          int(mr.get("mrlen", 0)), int(mr.get("pdn", -1))))
    return out


def pdns() -> set[int]:
    return {int(pd["pdn"]) for pd in json.loads(_rdma("-j", "resource", "show", "pd") or "[]")}
