"""conform's World with the hostile peer's raw operations as steps.

The model knows no raw operation, but it knows exactly what a READ or WRITE
from host 1 on the attacked connection may do: it is host 1's WSPRdmaWrite
or WSPRdmaRead with the descriptor whose key the raw operation carries (the
NIC sees a key, an address and a length, and so does the model: the key
names the live descriptor of the victim that carries it, or none), at the
offset its address makes, from the hostile peer's own registered buffer.
So each raw operation is judged by the model's own transition, and what
the NIC did selects the model's outcome: done is 0, refused by the victim's
responder is WSAECONNRESET (RDMA-08 outcome b, CONN-01). An outcome the
model does not allow is a ``Divergence``; after the step the World compares
every byte of both hosts, and the attack compares every connection.

A READ or WRITE of zero bytes has no SPI call (RDMA-03, RDMA-04), so no
model transition: ``raw_empty`` only runs it, and the byte comparison after
the step shows whether it touched anything.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs

from sanspi.attack.host import ATTACK_SOCKET, Completion
from sanspi.conform.world import NOTHING, World
from sanspi.model.constants import KIND_RDMA, OK, WSAECONNRESET
from sanspi.model.machine import make_args
from sanspi.model.transitions import Step


@attrs.define
class AttackWorld(World):
    #: The provider's descriptor format: (rkey, address, length) or None.
    decode: Callable[[bytes], tuple[int, int, int] | None] = attrs.field(default=None, kw_only=True)
    #: The last raw operation's completion (for the report).
    last: Completion | None = attrs.field(default=None, init=False)
    _decoded: dict = attrs.field(factory=dict, init=False)  # model id -> decoded descriptor (they never change)

    def descriptors(self) -> dict[int, tuple[int, int, int]]:
        """Model id -> (rkey, address, length) of every descriptor the victim issued."""
        for rid, (host, is_desc) in self.issued.items():
            if rid not in self._decoded and host == 0 and is_desc:
                self._decoded[rid] = self.decode(self.ids.value_of[rid])
        return {rid: f for rid, f in self._decoded.items() if f is not None}

    def live_rdma(self, rid: int) -> Any:
        """The victim's model slot that is live registration ``rid``, or None."""
        return next((sl for sl in self.model.state.hosts[0].slots
                     if sl.used and sl.kind == KIND_RDMA and sl.refs > 0 and sl.rid == rid), None)

    def named_by(self, rkey: int) -> int:
        """The live descriptor whose key ``rkey`` is (0: none): what a raw
        operation with that key means at the SPI."""
        live = {sl.rid for sl in self.model.state.hosts[0].slots if sl.used and sl.kind == KIND_RDMA and sl.refs > 0}
        return next((rid for rid, (key, _, _) in self.descriptors().items() if key == rkey and rid in live), 0)

    def _do_raw(self, write: bool, rkey: int, va: int, sges: tuple, **why: Any) -> Step:
        """``sges`` are (length, model address, Ref) of host 1's buffers, as
        the World's transfers take them; ``why`` only travels to the log."""
        bufs, msges = self._bufs(1, sges)
        rid = self.named_by(rkey)
        target = self.live_rdma(rid)
        offset = va - self.addr(0, target.addr) if target is not None else 0
        name = "rdma_write" if write else "rdma_read"
        margs = make_args(name, host=1, sock=ATTACK_SOCKET, sges=msges, desc=rid, offset=offset)
        self.last = self.providers[1].raw(write, rkey, va, [(b.buf, b.len, b.handle) for b in bufs])
        status = OK if self.last.ok else WSAECONNRESET
        return self._outcome(name, margs, status, sum(b.len for b in bufs) if self.last.ok else NOTHING,
                             f" (raw, key {rkey:#x})")

    def _do_raw_empty(self, write: bool, rkey: int, va: int, **why: Any) -> Step:
        self.last = self.providers[1].raw(write, rkey, va, [])
        return Step(True, OK if self.last.ok else WSAECONNRESET, 0, self.model.state)
