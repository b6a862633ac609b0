"""The hostile peer of the verbs provider (impl/verbs.py): raw pyverbs.

It completes the provider's own connection set-up as an honest peer does:
a TCP connection to the listener's address, one JSON line each way with
queue pair number, PSN, GID, descriptor key and failure notice, both QPs
and then both notice QPs to RTS, each confirmed by ``{"rts": true}`` each
way (impl/verbs_endpoint.py; its notice is the provider's own class,
impl/verbs_notice.py). Then it posts RDMA READs and WRITEs from a plain RC
queue pair in a PD of its own, with any rkey, remote address and length,
and polls their completions. When the victim's responder refuses one, it
tells the victim through the notice as the provider's protocol says a
failing requester does, so the victim's endpoint state is the one CONN-01
predicts.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
from typing import Any

from sanspi.attack import rdma
from sanspi.attack.host import CLOSED, CONNECTED, ERRORED, Completion
from sanspi.impl.interface import Ret
from sanspi.impl.verbs_notice import Notice
from sanspi.spi import MEM_READ, MEM_READWRITE, MEM_WRITE, OK, WSAEFAULT, WSAEINVAL, WSAENOTCONN

PORT = 1
#: Every completion is waited for at most this long (a refused request
#: completes when its NAK is back; retransmits on the two-host link take
#: tens of ms).
POLL_DEADLINE_S = 10.0
CONNECT_DEADLINE_S = 120.0


class _Connection:
    def __init__(self, qp: Any, cq: Any, notice: Notice) -> None:
        self.qp, self.cq, self.notice = qp, cq, notice
        self.mrs: dict[int, Any] = {}  # handle -> MR over host 1's pages

    def close(self) -> None:
        for mr in self.mrs.values():
            mr.close()
        self.mrs.clear()
        self.qp.close()
        self.cq.close()
        self.notice.close()


class VerbsHostilePeer:
    name = "verbs"

    def __init__(self, honest: Any) -> None:
        self.memory = honest.memory
        self.device = os.environ.get("SANSPI_LAB_DEVICE")
        self.gid_index = int(os.environ.get("SANSPI_LAB_GID", "1"))
        self.ctx: Any = None
        self.pd: Any = None
        self.gid = ""
        self.conns: dict[int, _Connection] = {}
        self.errored: set[int] = set()
        self._handles = itertools.count(2**48)
        self._wr = itertools.count(1)

    def _open(self) -> None:
        if self.ctx is not None:
            return
        from pyverbs.device import Context, get_device_list
        from pyverbs.pd import PD

        names = [d.name.decode() for d in get_device_list()]
        name = self.device or next((n for n in names if n.startswith("rxe")), None)
        self.ctx = Context(name=name)
        self.pd = PD(self.ctx)
        self.gid = self.ctx.query_gid(PORT, self.gid_index).gid

    # --- the provider's connection set-up ----------------------------------------------

    def connect(self, s: int, token: bytes) -> Ret:
        import pyverbs.enums as e
        from pyverbs.cq import CQ
        from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr

        from sanspi.impl.verbs_endpoint import to_rts

        if s in self.conns:
            return Ret(WSAEINVAL, 0)
        self._open()
        where = json.loads(token)
        side = socket.create_connection((where["addr"], int(where["port"])), timeout=CONNECT_DEADLINE_S)
        cq = CQ(self.ctx, 8)
        attr = QPAttr(port_num=PORT)
        attr.qp_access_flags = e.IBV_ACCESS_LOCAL_WRITE
        qp = QP(self.pd, QPInitAttr(qp_type=e.IBV_QPT_RC, scq=cq, rcq=cq,
                                    cap=QPCap(max_send_wr=8, max_recv_wr=1, max_send_sge=4, max_recv_sge=1)), attr)
        try:
            conn = _Connection(qp, cq, Notice(self.ctx))
        except Exception:
            qp.close()
            cq.close()
            side.close()
            raise
        try:
            psn = 0x4242
            rf, wf = side.makefile("r"), side.makefile("w")
            wf.write(json.dumps({"qpn": qp.qp_num, "psn": psn, "gid": self.gid, "key": os.urandom(16).hex(),
                                 "notice": conn.notice.describe()}) + "\n")
            wf.flush()
            victim = json.loads(rf.readline())
            to_rts(qp, e.IBV_ACCESS_LOCAL_WRITE, victim, psn, self.gid_index, rf, wf)  # the honest peer's own step
            conn.notice.connect(victim, self.gid_index, rf, wf)
            rf.close()
            wf.close()
        except Exception:
            conn.close()
            raise
        finally:
            side.close()
        self.conns[s] = conn
        self.errored.discard(s)
        return Ret(OK, 0)

    def close(self, s: int) -> Ret:
        conn = self.conns.pop(s, None)
        self.errored.discard(s)
        if conn is None:
            return Ret(WSAENOTCONN, 0)
        conn.close()
        return Ret(OK, 0)

    def state(self, s: int) -> int:
        """From the queue pair itself: ERR is the error state."""
        import pyverbs.enums as e

        conn = self.conns.get(s)
        if conn is None:
            return CLOSED
        attr, _ = conn.qp.query(e.IBV_QP_STATE)
        return ERRORED if attr.qp_state == e.IBV_QPS_ERR else CONNECTED

    # --- its own buffers -------------------------------------------------------------------

    def register(self, s: int, buf: int, length: int, flags: int) -> Ret:
        import pyverbs.enums as e
        from pyverbs.mr import MR

        if self.state(s) != CONNECTED:
            return Ret(WSAENOTCONN, 0)
        if flags not in (MEM_READ, MEM_WRITE, MEM_READWRITE) or length < 1:
            return Ret(WSAEINVAL, 0)
        if not self.memory.mapped(buf, length):
            return Ret(WSAEFAULT, 0)
        h = next(self._handles)
        self.conns[s].mrs[h] = MR(self.pd, length, e.IBV_ACCESS_LOCAL_WRITE, address=buf)
        return Ret(OK, h)

    def deregister(self, s: int, handle: Any) -> Ret:
        conn = self.conns.get(s)
        mr = conn.mrs.pop(handle, None) if conn is not None else None
        if mr is None:
            return Ret(WSAEINVAL, 0)
        mr.close()
        return Ret(OK, 0)

    # --- the attack ---------------------------------------------------------------------------

    def post(self, s: int, write: bool, rkey: int, va: int, sges: list[tuple[int, int, Any]]) -> Completion:
        import pyverbs.enums as e
        from pyverbs.cq import cqe_status_to_str
        from pyverbs.wr import SGE, SendWR

        conn = self.conns[s]
        sg = [SGE(a, n, conn.mrs[h].lkey) for a, n, h in sges]
        if not sg:  # pyverbs wants an SGE; one of zero bytes makes a zero-length request
            mr = next(iter(conn.mrs.values()))
            sg = [SGE(mr.buf, 0, mr.lkey)]
        wr_id = next(self._wr)
        wr = SendWR(wr_id=wr_id, opcode=e.IBV_WR_RDMA_WRITE if write else e.IBV_WR_RDMA_READ, num_sge=len(sg),
                    sg=sg, send_flags=e.IBV_SEND_SIGNALED)
        wr.set_wr_rdma(rkey, va % 2**64)
        conn.qp.post_send(wr)
        end = time.monotonic() + POLL_DEADLINE_S
        while True:
            n, wcs = conn.cq.poll(1)
            if n and wcs[0].wr_id == wr_id:
                wc = wcs[0]
                break
            if not n and time.monotonic() > end:
                raise TimeoutError(f"no completion within {POLL_DEADLINE_S} s")
        if wc.status == e.IBV_WC_SUCCESS:
            return Completion(True, "IBV_WC_SUCCESS")
        if wc.status not in (e.IBV_WC_REM_ACCESS_ERR, e.IBV_WC_REM_INV_REQ_ERR, e.IBV_WC_REM_OP_ERR):
            raise RuntimeError(f"the raw {'WRITE' if write else 'READ'} failed at this end: "
                               f"{cqe_status_to_str(wc.status)} ({wc.status})")
        self._tell(conn)
        return Completion(False, f"{cqe_status_to_str(wc.status)} ({wc.status})")

    @staticmethod
    def _tell(conn: _Connection) -> None:
        """The provider's word for "this connection failed", written into
        the victim's notice and acknowledged (its next call reads it)."""
        conn.notice.tell()

    def resources(self) -> dict[str, int]:
        return rdma.counts()

    def shutdown(self) -> None:
        for s in list(self.conns):
            self.close(s)
        for name in ("pd", "ctx"):
            obj = getattr(self, name)
            if obj is not None:
                setattr(self, name, None)
                obj.close()
