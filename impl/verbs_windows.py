"""Exposure of RDMA registrations through type-2 memory windows on one
endpoint (RREG-02, RDEREG-02, CACHE-03).

Facts from the lab (lab/RXE-FACTS.md): a type-2 window's rkey works only on
the QP it was bound on, and a local invalidate revokes it at once; rxe does
not check the window's range, so every RDMA registration has its own MR
covering exactly the buffer (verbs_table). pyverbs 44 does not update
``MW.rkey`` after a bind, so the key bound is kept here. A window bound to
an MR keeps that MR from being deregistered (EINVAL): windows go first.
"""

from __future__ import annotations

from typing import Any

from sanspi.impl.verbs_endpoint import CONNECTED
from sanspi.impl.verbs_table import grants
from sanspi.spi import MEM_READ, MEM_WRITE

try:  # the hot paths' pyverbs names, bound once (a host without rdma-core imports this module too)
    import pyverbs.enums as _e
except ImportError:  # pragma: no cover
    _e = None


class Windows:
    """The windows of one endpoint's exposures. Holds no verbs object of
    its own (each registration owns its window); ``close`` forgets."""

    def __init__(self, ep: Any, device: Any) -> None:
        self.ep, self.device = ep, device
        #: Every rkey ever bound on this connection (CACHE-03).
        self.exposed: set[int] = set()

    def expose(self, r: Any) -> bool:
        """Bind a fresh type-2 window over the whole of ``r``'s MR on this
        connection's QP with an rkey never exposed on it before (CACHE-03,
        RDMA-08: a stale descriptor cannot hit the new window by a 1-in-256
        key match), and make the descriptor that carries it. False when no
        window could be bound (the caller answers WSAENOBUFS)."""
        from pyverbs.mr import MWBindInfo

        ep = self.ep
        mw = self.device.alloc_mw()
        index = mw.rkey & ~0xFF
        key = next((index | ((mw.rkey + i) & 0xFF) for i in range(1, 256)
                    if (index | ((mw.rkey + i) & 0xFF)) not in self.exposed), None)
        if key is None:
            mw.close()
            return False
        access = ((_e.IBV_ACCESS_REMOTE_READ if grants(r.flags, MEM_READ) else 0)
                  | (_e.IBV_ACCESS_REMOTE_WRITE if grants(r.flags, MEM_WRITE) else 0))
        try:
            wc = ep.post_ex(lambda qp: qp.wr_bind_mw(mw, key, MWBindInfo(r.mr, r.addr, r.length, access)))
        except Exception:
            mw.close()  # never leave a window behind: its MR could not be deregistered
            raise
        self.device.stats["bind_mw"] += 1
        if wc is None or wc.status != _e.IBV_WC_SUCCESS:
            mw.close()
            if wc is None or ep.qp_state() == _e.IBV_QPS_ERR:
                ep.fail()
            return False
        self.exposed.add(key)
        r.mw, r.rkey = mw, key
        r.value = ep.codec.seal(r.flags, key, r.addr, r.length)
        return True

    def revoke(self, r: Any) -> None:
        """RDEREG-02: the peer loses access before the call returns. On a
        working QP a local invalidate of the key we bound (not pyverbs'
        stale ``MW.rkey``); then the window is freed. On a QP in ERR no WR
        can run, and none is needed: nothing reaches a dead QP, and
        deallocating the window unbinds it."""
        if r.mw is None:
            return
        ep = self.ep
        if ep.conn == CONNECTED:
            rkey = r.rkey
            wc = ep.post_ex(lambda qp: qp.wr_local_inv(rkey))
            self.device.stats["local_inv"] += 1
            if wc is None or wc.status != _e.IBV_WC_SUCCESS:
                ep.fail()
        r.close_window()

    def close(self) -> None:
        self.exposed.clear()
