"""One end of a connection's failure notice (CONN-01): how a provider whose
end of a connection failed tells the peer, so that the peer's next call
answers from the error state, and how the peer learns it without a system
call.

Each end has a queue pair of its own for this (the connection's QP is in
ERR by the time there is something to tell), in a protection domain of its
own, and one page registered there with remote write. The failing end
RDMA-writes one byte into the peer's page (``tell``) and waits for the
write's completion: an RC write completes when the peer's ACK is back, and
rxe's responder has written the byte into the page before it ACKs, so the
byte is in the peer's memory before the failing call returns, in one guest
or across two. The peer's every call reads that byte (``flag``): a memory
read, where polling a socket for the same word was a system call, a third
of a local cache hit under TCG (issue 15).

The PD is what keeps the notice to its connection: on rxe an MR with a
remote right answers to any QP of its PD (lab/RXE-FACTS.md, issue 14), and
the only QP in this PD is this notice's, connected to the one peer.

Exchange (verbs_endpoint): each end adds ``"notice": {"qpn", "psn",
"addr", "rkey"}`` to its first line, and brings its notice QP to RTS after
the connection's own, with the same ``to_rts`` step.
"""

from __future__ import annotations

import ctypes
import time
from typing import Any

from sanspi.impl.verbs_device import PORT

#: The notice's page: byte 0 is what the peer writes, byte 1 the source of
#: this end's own write.
PAGE = 4096
#: How long ``tell`` waits for its write's ACK: RC retransmits (67 ms a try,
#: seven tries) on the lossy two-host link fit in it.
TELL_DEADLINE_S = 5.0


class Notice:
    """The notice's PD, page (an MR pyverbs allocates), CQ and RC QP.
    ``close`` releases the QP, CQ, MR and PD in that order, and may be
    called again."""

    def __init__(self, ctx: Any) -> None:
        import pyverbs.enums as e
        from pyverbs.cq import CQ
        from pyverbs.mr import MR
        from pyverbs.pd import PD
        from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr

        self.pd = PD(ctx)
        self.mr = self.cq = self.qp = self.flag = None
        try:
            self.access = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE
            self.mr = MR(self.pd, PAGE, self.access)
            self.mr.write(b"\0\1", 2)
            #: Byte 0 of the page, read in place (``flag.value``): not 0
            #: once the peer has said that the connection failed.
            self.flag = ctypes.c_ubyte.from_address(self.mr.buf)
            self.cq = CQ(ctx, 2)
            attr = QPAttr(port_num=PORT)
            attr.qp_access_flags = self.access
            self.qp = QP(self.pd, QPInitAttr(qp_type=e.IBV_QPT_RC, scq=self.cq, rcq=self.cq,
                                             cap=QPCap(max_send_wr=1, max_recv_wr=1, max_send_sge=1,
                                                       max_recv_sge=1)), attr)
        except Exception:
            self.close()
            raise
        self.psn = (self.qp.qp_num * 2654435761) & 0xFFFFFF
        self.peer: dict | None = None

    def describe(self) -> dict:
        """This end's part of the exchange's first line."""
        return {"qpn": self.qp.qp_num, "psn": self.psn, "addr": self.mr.buf, "rkey": self.mr.rkey}

    def connect(self, peer: dict, gid_index: int, rf: Any, wf: Any) -> None:
        """Bring the notice QP to RTS towards the peer's (``peer``: the
        peer's first line of the exchange, its ``"notice"`` and ``"gid"``),
        confirmed both ways on the exchange's files."""
        from sanspi.impl.verbs_endpoint import to_rts

        theirs = peer["notice"]
        self.peer = {"qpn": int(theirs["qpn"]), "psn": int(theirs["psn"]), "gid": peer["gid"],
                     "addr": int(theirs["addr"]), "rkey": int(theirs["rkey"])}
        to_rts(self.qp, self.access, self.peer, self.psn, gid_index, rf, wf)

    def tell(self) -> bool:
        """Write the byte into the peer's page and wait for the ACK (at most
        ``TELL_DEADLINE_S``): True once the byte is there. False when the
        write failed or timed out (the peer is gone: nothing to tell)."""
        import pyverbs.enums as e
        from pyverbs.wr import SGE, SendWR

        if self.peer is None or self.qp is None:
            return False
        wr = SendWR(opcode=e.IBV_WR_RDMA_WRITE, num_sge=1, sg=[SGE(self.mr.buf + 1, 1, self.mr.lkey)],
                    send_flags=e.IBV_SEND_SIGNALED)
        wr.set_wr_rdma(self.peer["rkey"], self.peer["addr"])
        try:
            self.qp.post_send(wr)
        except Exception:  # noqa: BLE001  a QP that cannot post has no one to tell
            return False
        end = time.monotonic() + TELL_DEADLINE_S
        while time.monotonic() < end:
            n, wcs = self.cq.poll(1)
            if n:
                return wcs[0].status == e.IBV_WC_SUCCESS
        return False

    def close(self) -> None:
        self.flag = None  # it points into the MR's memory, freed below
        for name in ("qp", "cq", "mr", "pd"):
            obj = getattr(self, name, None)
            if obj is not None:
                setattr(self, name, None)
                obj.close()
