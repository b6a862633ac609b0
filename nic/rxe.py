"""The real side of the NIC lockstep: nic/access.py's owner and requester on
one rxe device, through pyverbs (imported here only; the host's tests use
a stand-in with the same methods).

The owner has two PDs and three RC connections (``CONN_PD``); its QPs are
extended QPs, so type-2 windows are bound and invalidated by work requests
as the verbs provider does it. The requester is one PD, one MR over its own
buffer and the other end of each connection. Addresses are offsets into
the owner's buffer; a READ lands at the start of the requester's buffer,
a WRITE is sent from there.
"""

from __future__ import annotations

import os
import time
from typing import Any

from sanspi.impl.realmem import RealMemory
from sanspi.nic.access import CONN_PD

PORT = 1
PAGES = 4
#: Every completion is waited for at most this long (under TCG a round trip
#: is about 0.1 ms; a refused access completes as soon as its NAK is back).
POLL_DEADLINE_S = 5.0
#: A responder moves its QP to the error state after it has sent the NAK:
#: how long the state may take to show after the requester's completion.
SETTLE_S = 0.5


class NicError(Exception):
    """The device did something the lockstep does not model (a lost
    completion, a verbs call that raised): one line, not a divergence."""


class RxeNic:
    size = PAGES * 4096

    def __init__(self, device: str | None = None, gid_index: int | None = None) -> None:
        import pyverbs.enums as e
        from pyverbs.device import Context, get_device_list
        from pyverbs.mr import MR
        from pyverbs.pd import PD

        self.e = e
        names = [d.name.decode() for d in get_device_list()]
        name = device or os.environ.get("SANSPI_LAB_DEVICE") or next((n for n in names if n.startswith("rxe")), None)
        if name is None or name not in names:
            raise NicError(f"no rxe device here (devices: {names or 'none'})")
        self.gid_index = gid_index if gid_index is not None else int(os.environ.get("SANSPI_LAB_GID", "1"))
        self.ctx = Context(name=name)
        self.gid = self.ctx.query_gid(PORT, self.gid_index).gid
        self.owner = RealMemory(PAGES)
        self.requester = RealMemory(PAGES)
        for m in (self.owner, self.requester):
            m.alloc(0, PAGES)
        self.pds = [PD(self.ctx) for _ in range(max(CONN_PD) + 1)]
        self.rpd = PD(self.ctx)
        self.sink = MR(self.rpd, self.size, e.IBV_ACCESS_LOCAL_WRITE, address=self.requester.base)
        self.mrs: dict[int, Any] = {}
        self.mws: dict[int, Any] = {}
        self.pairs: list[Any] = [None] * len(CONN_PD)
        self.next_wr = 1
        for conn in range(len(CONN_PD)):
            self._connect(conn)

    # --- connections --------------------------------------------------------------

    def _connect(self, conn: int) -> None:
        """The owner's extended QP and the requester's QP, each with its CQ, at RTS."""
        from pyverbs.addr import AHAttr, GID, GlobalRoute
        from pyverbs.cq import CQ
        from pyverbs.qp import QP, QPAttr, QPCap, QPEx, QPInitAttr, QPInitAttrEx

        e = self.e
        ocq, rcq = CQ(self.ctx, 8), CQ(self.ctx, 8)
        access = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ
        attr = QPAttr(port_num=PORT)
        attr.qp_access_flags = access
        cap = QPCap(max_send_wr=8, max_recv_wr=1, max_send_sge=1, max_recv_sge=1)
        ops = e.IBV_QP_EX_WITH_BIND_MW | e.IBV_QP_EX_WITH_LOCAL_INV | e.IBV_QP_EX_WITH_RDMA_WRITE
        owner = QPEx(self.ctx, QPInitAttrEx(qp_type=e.IBV_QPT_RC, scq=ocq, rcq=ocq, pd=self.pds[CONN_PD[conn]], cap=cap,
                                            comp_mask=e.IBV_QP_INIT_ATTR_PD | e.IBV_QP_INIT_ATTR_SEND_OPS_FLAGS,
                                            send_ops_flags=ops), attr)
        requester = QP(self.rpd, QPInitAttr(qp_type=e.IBV_QPT_RC, scq=rcq, rcq=rcq, cap=cap), attr)
        for qp, peer in ((owner, requester), (requester, owner)):
            rts = QPAttr(port_num=PORT)
            rts.qp_access_flags = access
            rts.path_mtu = e.IBV_MTU_1024
            rts.dest_qp_num = peer.qp_num
            rts.rq_psn = rts.sq_psn = 0
            rts.max_dest_rd_atomic = rts.max_rd_atomic = 1
            rts.min_rnr_timer, rts.timeout, rts.retry_cnt, rts.rnr_retry = 12, 14, 7, 7
            rts.ah_attr = AHAttr(port_num=PORT, is_global=1,
                                 gr=GlobalRoute(dgid=GID(self.gid), sgid_index=self.gid_index))
            qp.to_rts(rts)
        self.pairs[conn] = (owner, ocq, requester, rcq)

    def _disconnect(self, conn: int) -> None:
        pair, self.pairs[conn] = self.pairs[conn], None
        for obj in pair or ():
            obj.close()

    def reconnect(self, conn: int) -> None:
        """New QPs at both ends (the windows bound to the old QP were deallocated first)."""
        self._disconnect(conn)
        self._connect(conn)

    def _state(self, qp: Any) -> bool:
        attr, _ = qp.query(self.e.IBV_QP_STATE)
        return attr.qp_state == self.e.IBV_QPS_RTS

    def states(self, conn: int, expect: list[bool] | None = None) -> list[bool]:
        """(owner's end up, requester's end up); given ``expect``, waited for a
        short while (the responder's move to ERR lags its NAK)."""
        owner, _, requester, _ = self.pairs[conn]
        end = time.monotonic() + SETTLE_S
        while True:
            got = [self._state(owner), self._state(requester)]
            if expect is None or got == expect or time.monotonic() > end:
                return got
            time.sleep(0.002)

    # --- objects --------------------------------------------------------------------

    def reg_mr(self, h: int, pd: int, addr: int, length: int, access: int) -> tuple[int, int]:
        """Register an MR over the owner's buffer; (rkey, lkey)."""
        from pyverbs.mr import MR

        mr = self.mrs[h] = MR(self.pds[pd], length, access, address=self.owner.base + addr)
        return mr.rkey, mr.lkey

    def dereg_mr(self, h: int) -> bool:
        from pyverbs.pyverbs_error import PyverbsRDMAError

        try:
            self.mrs[h].close()
        except PyverbsRDMAError:
            return False
        return True

    def alloc_mw(self, h: int, pd: int) -> int:
        from pyverbs.mr import MW

        mw = self.mws[h] = MW(self.pds[pd], self.e.IBV_MW_TYPE_2)
        return mw.rkey

    def dealloc_mw(self, h: int) -> None:
        self.mws[h].close()

    def _complete(self, cq: Any, wr_id: int) -> Any:
        end = time.monotonic() + POLL_DEADLINE_S
        while time.monotonic() < end:
            n, wcs = cq.poll(1)
            if n:
                if wcs[0].wr_id == wr_id:
                    return wcs[0]
                continue
        raise NicError(f"no completion for work request {wr_id} within {POLL_DEADLINE_S} s")

    def _owner_wr(self, conn: int, build: Any) -> bool:
        owner, ocq, _, _ = self.pairs[conn]
        wr_id, self.next_wr = self.next_wr, self.next_wr + 1
        owner.wr_start()
        owner.wr_id = wr_id
        owner.wr_flags = self.e.IBV_SEND_SIGNALED
        build(owner)
        owner.wr_complete()
        return self._complete(ocq, wr_id).status == self.e.IBV_WC_SUCCESS

    def bind(self, h: int, mr_h: int, conn: int, addr: int, length: int, access: int, key: int) -> bool:
        """A type-2 bind on the owner's QP of ``conn``; the new key is the
        window's index with ``key``'s low byte (the caller tracks it: pyverbs
        keeps the allocation-time ``MW.rkey``, lab/RXE-FACTS.md)."""
        from pyverbs.mr import MWBindInfo

        mw, mr = self.mws[h], self.mrs[mr_h]
        return self._owner_wr(conn, lambda qp: qp.wr_bind_mw(
            mw, key, MWBindInfo(mr, self.owner.base + addr, length, access)))

    def invalidate(self, conn: int, key: int) -> bool:
        return self._owner_wr(conn, lambda qp: qp.wr_local_inv(key))

    def access(self, conn: int, write: bool, key: int, addr: int, length: int, data: bytes = b"") -> tuple[bool, bytes]:
        """The requester's READ or WRITE; (done, the bytes a READ brought)."""
        from pyverbs.wr import SGE, SendWR

        e = self.e
        _, _, requester, rcq = self.pairs[conn]
        if write:
            self.requester.write(self.requester.base, data)
        else:  # a marker: a refused READ must leave it
            self.requester.write(self.requester.base, b"\x5a" * length)
        wr_id, self.next_wr = self.next_wr, self.next_wr + 1
        # pyverbs wants an SGE; one of zero bytes makes a zero-length request
        wr = SendWR(wr_id=wr_id, opcode=e.IBV_WR_RDMA_WRITE if write else e.IBV_WR_RDMA_READ, num_sge=1,
                    sg=[SGE(self.requester.base, length, self.sink.lkey)], send_flags=e.IBV_SEND_SIGNALED)
        wr.set_wr_rdma(key, (self.owner.base + addr) % 2**64)
        requester.post_send(wr)
        wc = self._complete(rcq, wr_id)
        if wc.status not in (e.IBV_WC_SUCCESS, e.IBV_WC_REM_ACCESS_ERR):
            raise NicError(f"an access completed with status {wc.status}, neither done nor refused")
        ok = wc.status == e.IBV_WC_SUCCESS
        got = self.requester.read(self.requester.base, length) if length and not write else b""
        return ok, (got if ok else (b"" if got in (b"", b"\x5a" * length) else got))

    def memory(self) -> bytes:
        return self.owner.read(self.owner.base, self.size)

    def fill(self, data: bytes) -> None:
        self.owner.write(self.owner.base, data)

    def close(self) -> None:
        """Windows, then QPs, then MRs, then PDs: children first."""
        for mw in self.mws.values():
            mw.close()
        for conn in range(len(CONN_PD)):
            self._disconnect(conn)
        for mr in (*self.mrs.values(), self.sink):
            mr.close()
        for pd in (*self.pds, self.rpd):
            pd.close()
        self.ctx.close()
        self.owner.close()
        self.requester.close()
