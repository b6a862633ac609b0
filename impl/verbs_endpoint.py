"""One connected socket of the verbs provider: its RC queue pair (an
extended QP, for type-2 window binds and local invalidates), its send and
receive CQs, the TCP side channel of the connection exchange, and the
connection's state (CONN-01, CONN-02).

The exchange (kept as it is: a hostile peer speaks it from outside, issue
14): each end writes one JSON line ``{"qpn", "psn", "gid", "key"}`` (the key
in hex is the MAC key of the descriptors it will expose, verbs_descriptor),
reads the peer's, brings its QP to RTS, then both write and read
``{"rts": true}``. The TCP connection then stays open as the side channel:
its one message, the byte ``E``, says "this connection failed".

Facts from the lab (lab/RXE-FACTS.md) this rests on:

* A remote access error (IBV_WC_REM_ACCESS_ERR) moves *both* QPs to ERR,
  and so does an overlong send; exhausted RNR retries (or a transport
  timeout) fail only the requester's QP. So a failing end's ``fail`` tells
  the peer on the side channel, and the peer enters the error state on its
  next call (CONN-01).
* What a call costs (issue 8): the state check is a ``poll`` of the side
  channel with timeout 0, not an ``ibv_query_qp`` (~130 us under TCG).
  Every way a QP reaches ERR starts with a failed completion at one end,
  whose ``fail`` writes the byte and waits until the peer's TCP has
  acknowledged it (SIOCOUTQ is 0), so the byte is in the peer's socket
  before the failing call returns, in one guest or across two; the QP is
  queried only when the side channel or a failed receive says the state may
  have changed.
"""

from __future__ import annotations

import fcntl
import json
import select
import socket
import struct
import termios
import time
from typing import Any, Callable

from sanspi.impl.verbs_descriptor import Codec
from sanspi.impl.verbs_device import PORT, Device

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
#: How long a failing end waits for the peer's TCP to acknowledge the
#: side channel's "E" (a retransmit on the two-host link takes ~200 ms).
SIDE_ACK_DEADLINE_S = 5.0


def to_rts(qp: Any, access: int, peer: dict, psn: int, gid_index: int, rf: Any, wf: Any) -> None:
    """Bring an RC QP from INIT to RTS towards ``peer`` (its "qpn", "psn"
    and "gid" as the side channel's first line gives them), then confirm
    RTS both ways on the side channel's files ``rf``/``wf``. Every end of a
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


def await_delivery(sock: socket.socket, deadline_s: float = SIDE_ACK_DEADLINE_S) -> None:
    """Wait until the peer's TCP has acknowledged everything sent on
    ``sock`` (SIOCOUTQ, unacknowledged bytes, is 0): the byte is then in
    the peer's socket, and its next call sees it. Bounded; a peer that
    hung up or reset is not waited for."""
    end = time.monotonic() + deadline_s
    hup = select.poll()
    hup.register(sock, select.POLLERR | select.POLLHUP | select.POLLRDHUP)
    while True:
        try:
            left = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        except OSError:
            return
        if left <= 0 or hup.poll(0) or time.monotonic() >= end:
            return
        time.sleep(0.0002)


class Endpoint:
    """One connected socket: QP, CQs, side channel and descriptor codec,
    plus its data path (``data``, verbs_datapath). ``close`` releases the
    data path's objects, the side channel, then the QP before its CQs; it
    may be called again."""

    def __init__(self, qp: Any, scq: Any, rcq: Any) -> None:
        from pyverbs.cq import PollCqAttr

        self.qp, self.scq, self.rcq = qp, scq, rcq
        self._poll_attr = PollCqAttr()
        self.conn = CONNECTED
        self.remote_qpn = 0
        self.codec = Codec()
        self.next_wr = 1
        #: The TCP connection of the exchange, kept open: it carries the one
        #: message "this connection failed" when this end's QP went to ERR
        #: without the peer's QP doing so (a local timeout, RNR retries
        #: exhausted), so the peer still enters the error state (CONN-01).
        self.side: socket.socket | None = None
        #: A poll object on ``side`` (POLLIN): readable means the peer said
        #: something or hung up, the only time ``state`` looks further.
        self.watch: Any = None
        #: A receive completed in error here: the QP may be in ERR.
        self.suspect = False
        self.data: Any = None  # the DataPath, set by the provider

    # --- the exchange ------------------------------------------------------------

    @classmethod
    def establish(cls, device: Device, conn: socket.socket, max_sge: int) -> "Endpoint":
        """Create the RC QP, swap QPN/PSN/GID/key over ``conn``, bring the
        QP to RTS, and wait until the peer's is too (so neither end posts to
        a QP that is not ready to answer). ``conn`` becomes the endpoint's
        side channel, or is closed on failure (the exception propagates)."""
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
            psn = (qp.qp_num * 2654435761) & 0xFFFFFF  # any PSN works; a fixed one keeps runs repeatable
            rf, wf = conn.makefile("r"), conn.makefile("w")
            wf.write(json.dumps({"qpn": qp.qp_num, "psn": psn, "gid": device.gid, "key": ep.codec.key.hex()})
                     + "\n")
            wf.flush()
            peer = json.loads(rf.readline())
            to_rts(qp, access, peer, psn, device.gid_index, rf, wf)
            rf.close()  # the file objects only; the socket stays for the side channel
            wf.close()
            ep.remote_qpn = int(peer["qpn"])
            ep.codec.set_peer(bytes.fromhex(str(peer["key"])))
        except Exception:
            conn.close()
            ep.close()
            raise
        conn.setblocking(False)
        ep.side = conn
        ep.watch = select.poll()
        ep.watch.register(conn, select.POLLIN)
        return ep

    # --- state (CONN-01, CONN-02) -----------------------------------------------

    def state(self) -> int:
        """CONNECTED or ERRORED, after learning whether the connection
        failed at the other end. The peer's ``fail`` has put its "E" into
        our side channel's socket before its call returned, so a ``poll``
        with timeout 0 tells; only then (or after a receive failed here) is
        the QP queried: ERR, or the peer's word, is the error state."""
        if self.conn == CONNECTED and (self.suspect or (self.watch is not None and self.watch.poll(0))):
            self.suspect = False
            if self.qp_state() == _e.IBV_QPS_ERR or self._peer_failed():
                self.fail()
        return self.conn

    def qp_state(self) -> int:
        attr, _ = self.qp.query(_e.IBV_QP_STATE)
        return attr.qp_state

    def _peer_failed(self) -> bool:
        """Has the peer said, on the side channel, that the connection failed?
        At the end of its stream (the peer closed it) nothing more can come:
        the channel is no longer watched."""
        if self.side is None:
            return False
        try:
            got = self.side.recv(1)
        except (BlockingIOError, InterruptedError):
            return False  # nothing said: the usual case
        except OSError:
            self.watch = None
            return False
        if not got:
            self.watch = None
        return got == b"E"

    def fail(self) -> None:
        """CONN-01 on this end: the error state; a posted receive is done,
        aborted (its flush completion, if it comes, is ignored)."""
        if self.conn == ERRORED:
            return
        self.conn = ERRORED
        state = self.qp_state()
        # Tell the peer in any case: its QP is in ERR too after a remote
        # access error, but not after a local timeout or exhausted RNR
        # retries, and then only this message takes it down (CONN-01).
        if self.side is not None:
            try:
                self.side.send(b"E")
                await_delivery(self.side)
            except OSError:
                pass  # the peer is gone: nothing left to tell
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
        self.watch = None
        if self.data is not None:
            self.data.close()
        self.codec.close()
        if self.side is not None:
            self.side.close()
            self.side = None
        for name in ("qp", "scq", "rcq"):
            obj = getattr(self, name)
            if obj is not None:
                setattr(self, name, None)
                obj.close()
