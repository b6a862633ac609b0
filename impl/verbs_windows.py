"""Exposure of RDMA registrations through type-2 memory windows on one
endpoint (RREG-02, RDEREG-02, CACHE-03).

A registration's MR has no remote right of its own (verbs_table); remote
access exists only through a window bound on the connection's QP, granting
what the registration's flags say, under an rkey never bound on that
connection before (CACHE-03, RDMA-08: a stale descriptor cannot hit a new
window by a 1-in-256 key match), and invalidated at the last
deregistration (RDEREG-02).

Facts from the lab (lab/RXE-FACTS.md): a type-2 window's rkey works only on
the QP it was bound on, and a local invalidate revokes it at once; rxe does
not check the window's range, so every RDMA registration has its own MR
covering exactly the buffer. A window bound to an MR keeps that MR from
being deregistered (EINVAL): windows go first. A window cannot be bound a
second time through pyverbs: librxe sends the key in the ``ibv_mw`` struct,
which pyverbs 44 leaves at the allocation-time key, while the kernel
expects the key bound last (``MW_BIND_ERR``). So a window serves one
exposure, and what an exposure needs besides the bind (the window, its key,
the bind's description, the sealed descriptor and the answer) is made
ready ahead: at the deregistration that puts the entry in the cache, so a
cache hit only binds (issue 15; bench.json shows the two costs,
``prepare_ahead_us`` and ``window_us``). Windows are allocated, and revoked
ones freed, a few at a time (``BATCH``).
"""

from __future__ import annotations

from typing import Any

from sanspi.impl.interface import RdmaRegistration, Ret
from sanspi.impl.verbs_descriptor import DESC
from sanspi.impl.verbs_endpoint import CONNECTED
from sanspi.impl.verbs_table import grants
from sanspi.spi import MEM_READ, MEM_WRITE

try:  # the hot paths' pyverbs names, bound once (a host without rdma-core imports this module too)
    import pyverbs.enums as _e
    from pyverbs.mr import MWBindInfo as _MWBindInfo
except ImportError:  # pragma: no cover
    _e = _MWBindInfo = None

OK = 0


class Exposure:
    """One exposure made ready: an unbound window, the key it will be bound
    under, the bind's description and the registration call's answer
    carrying the sealed descriptor. Owns the window; ``close`` frees it."""

    __slots__ = ("mw", "rkey", "info", "descriptor", "answer")

    def __init__(self, mw: Any, rkey: int, info: Any, descriptor: bytes) -> None:
        self.mw, self.rkey, self.info, self.descriptor = mw, rkey, info, descriptor
        self.answer = Ret(OK, RdmaRegistration(descriptor, DESC.size))

    def close(self) -> None:
        if self.mw is not None:
            mw, self.mw = self.mw, None
            mw.close()


#: Windows allocated, and revoked ones freed, this many at a time. Each
#: exposure still takes a window of its own and frees it when revoked, but a
#: deregistration allocates or frees one only every BATCH times: under TCG
#: the kernel work of an allocation just before a cache hit made that hit
#: cost about 1.7 times as much (issue 15; lab/RXE-FACTS.md).
BATCH = 4


class Windows:
    """The windows of one endpoint's exposures (each registration owns the
    one it is exposed through and the one made ready for it). Owns the
    windows allocated and not yet given out (``spare``), and revoked ones
    not yet freed (``spent``: invalidated, so they grant nothing); ``close``
    frees both and forgets the keys."""

    def __init__(self, ep: Any, device: Any) -> None:
        self.ep, self.device = ep, device
        #: Every rkey ever made ready on this connection (CACHE-03).
        self.exposed: set[int] = set()
        self.spare: list[Any] = []
        self.spent: list[Any] = []

    def _window(self) -> Any:
        """An unbound window: a spare one, after allocating BATCH if none is left."""
        if not self.spare:
            for _ in range(BATCH):
                self.spare.append(self.device.alloc_mw())
        return self.spare.pop()

    def _retire(self, mw: Any) -> None:
        """A revoked window, freed with BATCH - 1 others."""
        self.spent.append(mw)
        if len(self.spent) >= BATCH:
            self._free(self.spent)

    @staticmethod
    def _free(mws: list[Any]) -> None:
        while mws:
            mws.pop().close()

    def prepare(self, r: Any) -> bool:
        """Make ``r``'s next exposure ready: allocate its window, choose a
        key never exposed on this connection, describe the bind (the whole
        MR, with the rights ``r``'s flags grant; described once per entry)
        and seal the descriptor.
        False when no key is left for the window (the caller answers
        WSAENOBUFS at the exposure)."""
        mw = self._window()
        index = mw.rkey & ~0xFF
        for i in range(1, 256):
            key = index | ((mw.rkey + i) & 0xFF)
            if key not in self.exposed:
                break
        else:
            mw.close()
            return False
        self.exposed.add(key)
        try:
            info = r.bind_info
            if info is None:  # once per entry: a pyverbs MWBindInfo costs about 65 us under TCG
                access = ((_e.IBV_ACCESS_REMOTE_READ if grants(r.flags, MEM_READ) else 0)
                          | (_e.IBV_ACCESS_REMOTE_WRITE if grants(r.flags, MEM_WRITE) else 0))
                info = r.bind_info = _MWBindInfo(r.mr, r.addr, r.length, access)
            r.next = Exposure(mw, key, info, self.ep.codec.seal(r.flags, key, r.addr, r.length))
        except Exception:
            mw.close()  # never leave a window behind
            raise
        return True

    def expose(self, r: Any) -> bool:
        """Bind ``r``'s window on this connection's QP (made ready now if it
        is not yet): afterwards ``r.answer`` carries its descriptor. The
        bind is signalled and its completion waited for, so a descriptor is
        handed out only once its window is bound. False when no window
        could be bound (the caller answers WSAENOBUFS)."""
        ready = r.next
        if ready is None:
            if not self.prepare(r):
                return False
            ready = r.next
        ep = self.ep
        wr_id = ep.next_wr
        ep.next_wr = wr_id + 1
        qp = ep.qp
        qp.wr_start()
        qp.wr_id = wr_id  # (signalled: the endpoint set ``wr_flags`` once)
        qp.wr_bind_mw(ready.mw, ready.rkey, ready.info)
        qp.wr_complete()
        status = ep.poll_send(wr_id)
        self.device.stats["bind_mw"] += 1
        r.next = None
        if status != _e.IBV_WC_SUCCESS:
            ready.close()
            if status is None or ep.qp_state() == _e.IBV_QPS_ERR:
                ep.fail()
            return False
        r.mw, r.rkey, r.value, r.answer = ready.mw, ready.rkey, ready.descriptor, ready.answer
        return True

    def revoke(self, r: Any) -> None:
        """RDEREG-02: the peer loses access before the call returns. On a
        working QP a local invalidate of the key we bound (not pyverbs'
        stale ``MW.rkey``), waited for; the window, now bound to nothing, is
        freed with the next ones (``_retire``). On a QP in ERR no WR can
        run, and none is needed: nothing reaches a dead QP, and deallocating
        the window at once unbinds it."""
        if r.mw is None:
            return
        ep = self.ep
        if ep.conn == CONNECTED:
            rkey = r.rkey
            status = ep.post_ex(lambda qp: qp.wr_local_inv(rkey))
            self.device.stats["local_inv"] += 1
            if status != _e.IBV_WC_SUCCESS:
                ep.fail()
        mw, r.mw = r.mw, None
        if ep.conn == CONNECTED:
            self._retire(mw)
        else:
            mw.close()  # deallocating unbinds it: nothing reaches a dead QP, and nothing may stay bound

    def close(self) -> None:
        """Free the spare and spent windows (before the QP and the PD go)."""
        try:
            self._free(self.spent)
        finally:
            self._free(self.spare)
            self.exposed.clear()
