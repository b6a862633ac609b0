"""One connected socket of the verbs provider: its RC queue pair (an
extended QP, for type-2 window binds and local invalidates), its send and
receive CQs, its failure notice (verbs_notice) and the connection's state
(CONN-01, CONN-02).

The exchange (a hostile peer speaks it from outside, issue 14), on a TCP
connection that is closed once it is done: each end writes one JSON line
``{"qpn", "psn", "gid", "key", "notice"}`` (the key in hex is the MAC key
of the descriptors it will expose, verbs_descriptor; the notice is its
notice QP's ``{"qpn", "psn", "addr", "rkey"}``), reads the peer's, brings
its QP to RTS and then its notice QP, each step confirmed by both ends
writing and reading ``{"rts": true}``.

Facts from the lab (lab/RXE-FACTS.md) this rests on:

* A remote access error (IBV_WC_REM_ACCESS_ERR) moves *both* QPs to ERR,
  and so does an overlong send; exhausted RNR retries (or a transport
  timeout) fail only the requester's QP. So a failing end's ``fail`` tells
  the peer through the notice, and the peer enters the error state on its
  next call (CONN-01).
* What a call costs (issue 8, issue 15): the state check reads the
  notice's byte in this process's memory, not an ``ibv_query_qp`` (~130 us
  under TCG) nor a ``poll`` of a socket (a system call). Every way a QP
  reaches ERR starts with a failed completion at one end, whose ``fail``
  writes the peer's byte and waits for the write's ACK, so the byte is in
  the peer's memory before the failing call returns; the QP is queried
  only when a failed receive here says the state may have changed.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any, Callable

from sanspi.impl.verbs_descriptor import Codec
from sanspi.impl.verbs_device import PORT, Device
from sanspi.impl.verbs_notice import Notice

try:  # the hot paths' pyverbs names, bound once (a host without rdma-core imports this module too)
    import pyverbs.enums as _e
except ImportError:  # pragma: no cover
    _e = None

CONNECTED, ERRORED = 1, 2
#: Every completion is waited for at most this long: under TCG an RDMA
#: round trip is ~125 us, a retransmit on the two-host link tens of ms.
POLL_DEADLINE_S = 10.0
#: How long accept/connect wait for the peer (the other guest may boot late).
CONNECT_DEADLINE_S = 120.0


def to_rts(qp: Any, access: int, peer: dict, psn: int, gid_index: int, rf: Any, wf: Any) -> None:
    """Bring an RC QP from INIT to RTS towards ``peer`` (its "qpn", "psn"
    and "gid" as the exchange's first line gives them), then confirm
    RTS both ways on the exchange's files ``rf``/``wf``. Every end of a
    connection does exactly this, the hostile peer included (attack/)."""
    from pyverbs.addr import AHAttr, GID, GlobalRoute
    from pyverbs.qp import QPAttr

    attr = QPAttr(port_num=PORT)
    attr.qp_access_flags = access
    attr.path_mtu = _e.IBV_MTU_1024
    attr.dest_qp_num = int(peer["qpn"])
    attr.rq_psn = int(peer["psn"])
    attr.sq_psn = psn
    attr.max_dest_rd_atomic = 1
    attr.max_rd_atomic = 1
    attr.min_rnr_timer = 12
    attr.timeout = 14  # 67 ms a try: retransmits on the lossy two-host link recover
    attr.retry_cnt = 7
    # The switch always posts before the peer sends (XFER-03), so RNR
    # means a bug: give up after a few retries instead of forever.
    attr.rnr_retry = 3
    attr.ah_attr = AHAttr(port_num=PORT, is_global=1, gr=GlobalRoute(dgid=GID(str(peer["gid"])), sgid_index=gid_index))
    qp.to_rts(attr)
    wf.write('{"rts": true}\n')
    wf.flush()
    if json.loads(rf.readline()) != {"rts": True}:
        raise OSError("the peer did not reach RTS")


class Endpoint:
    """One connected socket: QP, CQs, failure notice and descriptor codec,
    plus its data path (``data``, verbs_datapath). ``close`` releases the
    data path's objects, then the QP before its CQs, then the notice; it
    may be called again."""

    def __init__(self, qp: Any, scq: Any, rcq: Any) -> None:
        from pyverbs.cq import PollCqAttr

        self.qp, self.scq, self.rcq = qp, scq, rcq
        self._poll_attr = PollCqAttr()
        self.conn = CONNECTED
        self.remote_qpn = 0
        self.codec = Codec()
        self.next_wr = 1
        #: How this end learns that the peer's end failed, and tells the
        #: peer that its own did (CONN-01): the connection's QP may be in
        #: ERR without the peer's being so (a local timeout, RNR retries
        #: exhausted), and then only this takes the peer down. Made by
        #: ``establish``.
        self.notice: Notice | None = None
        #: A receive completed in error here: the QP may be in ERR.
        self.suspect = False
        self.data: Any = None  # the DataPath, set by the provider

    # --- the exchange ------------------------------------------------------------

    @classmethod
    def establish(cls, device: Device, conn: socket.socket, max_sge: int) -> "Endpoint":
        """Create the RC QP and the notice, swap their QPN/PSN, the GID, the
        key and the notice's page over ``conn``, bring the QP and then the
        notice's QP to RTS, waiting each time until the peer's is too (so
        neither end posts to a QP that is not ready to answer). ``conn`` is
        closed in every case (the exception, if any, propagates)."""
        import pyverbs.enums as e
        from pyverbs.cq import CQ, CQEX, CqInitAttrEx
        from pyverbs.qp import QPAttr, QPCap, QPEx, QPInitAttrEx

        conn.settimeout(CONNECT_DEADLINE_S)
        scq = CQEX(device.ctx, CqInitAttrEx(cqe=32))  # read in place: see ``poll_send``
        rcq = CQ(device.ctx, 8)
        ops = (e.IBV_QP_EX_WITH_RDMA_WRITE | e.IBV_QP_EX_WITH_RDMA_READ | e.IBV_QP_EX_WITH_SEND
               | e.IBV_QP_EX_WITH_BIND_MW | e.IBV_QP_EX_WITH_LOCAL_INV)
        init = QPInitAttrEx(qp_type=e.IBV_QPT_RC, scq=scq, rcq=rcq, pd=device.pd,
                            cap=QPCap(max_send_wr=16, max_recv_wr=4, max_send_sge=max_sge, max_recv_sge=1),
                            comp_mask=e.IBV_QP_INIT_ATTR_PD | e.IBV_QP_INIT_ATTR_SEND_OPS_FLAGS,
                            send_ops_flags=ops)
        # The QP allows every remote access: the window (and its MR) decide.
        access = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ
        attr = QPAttr(port_num=PORT)
        attr.qp_access_flags = access
        try:
            qp = QPEx(device.ctx, init, attr)
        except Exception:
            rcq.close()
            scq.close()
            conn.close()
            raise
        # Every WR of the extended API (binds, invalidates) is signalled;
        # libibverbs keeps ``wr_flags`` from one WR to the next.
        qp.wr_flags = e.IBV_SEND_SIGNALED
        ep = cls(qp, scq, rcq)
        try:
            ep.notice = Notice(device.ctx)
            psn = (qp.qp_num * 2654435761) & 0xFFFFFF  # any PSN works; a fixed one keeps runs repeatable
            rf, wf = conn.makefile("r"), conn.makefile("w")
            wf.write(json.dumps({"qpn": qp.qp_num, "psn": psn, "gid": device.gid, "key": ep.codec.key.hex(),
                                 "notice": ep.notice.describe()}) + "\n")
            wf.flush()
            peer = json.loads(rf.readline())
            to_rts(qp, access, peer, psn, device.gid_index, rf, wf)
            ep.notice.connect(peer, device.gid_index, rf, wf)
            rf.close()
            wf.close()
            ep.remote_qpn = int(peer["qpn"])
            ep.codec.set_peer(bytes.fromhex(str(peer["key"])))
        except Exception:
            ep.close()
            raise
        finally:
            conn.close()
        return ep

    # --- state (CONN-01, CONN-02) -----------------------------------------------

    def state(self) -> int:
        """CONNECTED or ERRORED, after learning whether the connection
        failed at the other end. The peer's ``fail`` has written the
        notice's byte into our memory before its call returned, so reading
        it tells; the QP is queried only after a receive failed here: ERR,
        or the peer's word, is the error state."""
        if self.conn == CONNECTED:
            if self.notice.flag.value:
                self.fail(tell=False)
            elif self.suspect:
                self.suspect = False
                if self.qp_state() == _e.IBV_QPS_ERR:
                    self.fail()
        return self.conn

    def qp_state(self) -> int:
        attr, _ = self.qp.query(_e.IBV_QP_STATE)
        return attr.qp_state

    def fail(self, tell: bool = True) -> None:
        """CONN-01 on this end: the error state; a posted receive is done,
        aborted (its flush completion, if it comes, is ignored). The peer
        is told (``tell``) unless it is the one that told us."""
        if self.conn == ERRORED:
            return
        self.conn = ERRORED
        state = self.qp_state()
        # Tell the peer in any case: its QP is in ERR too after a remote
        # access error, but not after a local timeout or exhausted RNR
        # retries, and then only this takes it down (CONN-01). A peer that
        # is gone is not waited for beyond the notice's deadline.
        if tell and self.notice is not None:
            self.notice.tell()
        if state != _e.IBV_QPS_ERR:  # a local timeout: take the QP down too
            from pyverbs.qp import QPAttr

            down = QPAttr()
            down.qp_state = _e.IBV_QPS_ERR
            self.qp.modify(down, _e.IBV_QP_STATE)
        if self.data is not None:
            self.data.abort_recv()

    # --- send-queue work requests --------------------------------------------------

    def poll_send(self, wr_id: int) -> int | None:
        """The status of ``wr_id``'s completion (every send-side WR is
        signalled and waited for before the next is posted), or None at the
        deadline. The send CQ is an extended CQ whose entries are read in
        place (start_poll, wr_id, status, end_poll): ``CQ.poll`` makes a
        pyverbs ``WC`` object per completion, which under TCG costs as much
        as the bind it reports (issue 15). A tight busy poll: the clock is
        read every 64 empty polls (and not at all when the completion is
        there at once, as a bind's or an invalidate's is, RXE-FACTS)."""
        cq, attr = self.scq, self._poll_attr
        end = 0.0
        spins = 0
        while True:
            if not cq.start_poll(attr):  # 0: an entry; ENOENT: none yet
                got, status = cq.wr_id, cq.status
                cq.end_poll()
                if got == wr_id:
                    return status
                continue
            spins += 1
            if not spins & 63:
                now = time.monotonic()
                if not end:
                    end = now + POLL_DEADLINE_S
                elif now >= end:
                    return None

    def post_ex(self, build: Callable[[Any], Any]) -> int | None:
        """One signalled WR through the extended API (bind, local
        invalidate), waited for: its completion's status, or None at the
        deadline."""
        wr_id = self.next_wr
        self.next_wr += 1
        qp = self.qp
        qp.wr_start()
        qp.wr_id = wr_id
        build(qp)
        qp.wr_complete()
        return self.poll_send(wr_id)

    # --- teardown -------------------------------------------------------------------

    def close(self) -> None:
        if self.data is not None:
            self.data.close()
        self.codec.close()
        for name in ("qp", "scq", "rcq", "notice"):
            obj = getattr(self, name)
            if obj is not None:
                setattr(self, name, None)
                obj.close()
