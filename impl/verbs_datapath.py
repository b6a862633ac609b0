"""The verbs provider's data path on one endpoint: RDMA WRITE and READ,
SEND, and the one posted receive (RDMA-*, XFER-*).

Facts from the lab (lab/RXE-FACTS.md): librxe 44's extended-API
``wr_set_sge_list`` with more than one SGE completes with
IBV_WC_LOC_QP_OP_ERR, while the legacy ``ibv_post_send`` with the same list
works, so data WRs are posted the legacy way (binds and invalidates go
through the extended API, verbs_windows). A data WR's pyverbs objects are
made once per (opcode, SGEs, rkey, remote address) and posted again with a
new ``wr_id``: making them costs more than the post (issue 8).
"""

from __future__ import annotations

import time
from typing import Any

from sanspi.impl.interface import Ret
from sanspi.spi import WSA_OPERATION_ABORTED

try:  # the hot paths' pyverbs names, bound once (a host without rdma-core imports this module too)
    import pyverbs.enums as _e
    from pyverbs.wr import SGE as _SGE, RecvWR as _RecvWR, SendWR as _SendWR
except ImportError:  # pragma: no cover
    _e = _SGE = _RecvWR = _SendWR = None

OK = 0
#: Data WRs kept per connection for reuse; more are made afresh.
WR_CACHE = 32


class DataPath:
    """Posting and completing one endpoint's data work requests. Owns the
    data WRs it keeps for reuse; ``close`` drops them (the endpoint's QP
    and CQs are the endpoint's)."""

    def __init__(self, ep: Any) -> None:
        self.ep = ep
        #: (handle, addr, len, wr_id) of the posted receive, and its
        #: completion once seen.
        self.recv: tuple | None = None
        self.recv_result: Ret | None = None
        #: Data WRs by (opcode, SGEs, rkey, remote address).
        self._wrs: dict[tuple, Any] = {}

    def transfer(self, opcode: int, bufs: list, rkey: int | None, remote: int | None) -> int | None:
        """One signalled data WR, one SGE per WSABUFEX in array order, and
        its completion's status (None at the deadline). ``bufs`` is [(WsaBufEx,
        registration)]; the WR is a pure function of (opcode, SGEs, rkey,
        remote address), so one made before for the same values is posted
        again with a new ``wr_id`` (``ibv_post_send`` copies it into the
        send queue)."""
        ep = self.ep
        wr_id = ep.next_wr
        ep.next_wr += 1
        sg = tuple([(b.buf, b.len, r.mr.lkey) for b, r in bufs])
        key = (opcode, sg, rkey, remote)
        wr = self._wrs.get(key)
        if wr is None:
            sges = [_SGE(a, n, lkey) for a, n, lkey in sg]
            wr = _SendWR(wr_id=wr_id, opcode=opcode, num_sge=len(sges), sg=sges, send_flags=_e.IBV_SEND_SIGNALED)
            if rkey is not None:
                wr.set_wr_rdma(rkey, remote)
            if len(self._wrs) >= WR_CACHE:
                self._wrs.clear()
            self._wrs[key] = wr
        else:
            wr.wr_id = wr_id
        ep.qp.post_send(wr)
        return ep.poll_send(wr_id)

    # --- the posted receive (XFER-02) ---------------------------------------------

    def post_recv(self, handle: Any, addr: int, length: int, lkey: int) -> None:
        ep = self.ep
        wr_id = ep.next_wr
        ep.next_wr += 1
        ep.qp.post_recv(_RecvWR(wr_id=wr_id, num_sge=1, sg=[_SGE(addr, length, lkey)]))
        self.recv, self.recv_result = (handle, addr, length, wr_id), None

    def poll_recv(self, deadline_s: float) -> None:
        """Look for the posted receive's completion for up to ``deadline_s``."""
        ep = self.ep
        end = time.monotonic() + deadline_s
        while self.recv is not None and self.recv_result is None:
            n, wcs = ep.rcq.poll(1)
            if n and wcs[0].wr_id == self.recv[3]:
                wc = wcs[0]
                if wc.status == _e.IBV_WC_SUCCESS:
                    self.recv_result = Ret(OK, wc.byte_len)
                else:  # flushed or failed: the QP may be in ERR (the endpoint's state looks)
                    self.recv_result = Ret(WSA_OPERATION_ABORTED, 0)
                    ep.suspect = True
            elif not n and time.monotonic() >= end:
                return

    def receiving_into(self, handle: Any) -> bool:
        """DEREG-03: is the posted receive, not yet complete, in ``handle``?"""
        if self.recv is None or self.recv[0] != handle:
            return False
        if self.recv_result is None:
            self.poll_recv(0.0)
        return self.recv_result is None

    def take_recv(self) -> Ret | None:
        """The posted receive's result, once complete, and the slot freed."""
        ret = self.recv_result
        if ret is not None:
            self.recv, self.recv_result = None, None
        return ret

    def abort_recv(self) -> None:
        """The connection failed: a receive that completed before keeps its
        result, one still posted is aborted (CONN-01)."""
        if self.recv is not None and self.recv_result is None:
            self.poll_recv(0.0)
            if self.recv_result is None:
                self.recv_result = Ret(WSA_OPERATION_ABORTED, 0)

    def close(self) -> None:
        self._wrs.clear()
