"""Remote access to a verbs provider's memory exists only through the
type-2 window of the registration's own connection (RREG-02), never after
WSPDeregisterRdmaMemory (RDEREG-02), cached or not (CACHE-03): issue 14.

On rxe an MR's key is ``index << 8 | 8 random bits``, and an MR registered
with a remote right answers to that key from any QP of its PD. So a peer
that guesses at most 256 keys of a small index reaches the buffer, from any
connection and after deregistration while the entry is cached, unless the
MR itself carries no remote right (lab/RXE-FACTS.md, "Keys, rights").

The intruder here uses two ways in, in every phase of one registration's
life (live, deregistered and cached, exposed again from the cache, released
by the cache callback):

* the provider's own connection exchange: host 0's provider, connected to
  the victim (host 1) on socket 1, posts an RDMA WRITE through a descriptor
  sealed for socket 1 that carries the MR's key instead of the window's
  (the issue's reproduction);
* raw pyverbs: an RC QP of its own, connected to an RC QP in the victim's
  PD that allows every remote access, as the provider's QPs do (rxe checks
  key, PD, rights, state and range: the QP pair is the victim's connection
  in every respect that check sees), tries RDMA WRITE and READ with all 256
  keys of the MR's index and with the window's key. Each refusal puts both
  QPs in the error state; both are reset and reconnected before the next.

Every try must be refused, the victim's bytes unchanged and nothing read.
"""

from __future__ import annotations

import threading

import pytest

from sanspi.model.constants import MEM_READWRITE, OK, WSAECONNRESET

pytestmark = pytest.mark.rxe
clause = pytest.mark.clause

PAGE = 4096
N = 64  # bytes each try moves


@pytest.fixture
def hosts(lab):
    """Two started verbs providers connected on sockets 0 and 1, a page
    mapped on each; the victim is host 1."""
    from sanspi.impl.verbs import VerbsProvider

    p = (VerbsProvider(pages=2), VerbsProvider(pages=2))
    try:
        for h in p:
            assert h.startup_ex(0x0202).status == OK
            h.memory.alloc(0, 2)
        for s in (0, 1):
            connect(p, s)
        yield p
    finally:
        for h in p:
            h.shutdown()
    assert p[0].errors == p[1].errors == []


def connect(p, s: int) -> None:
    token = p[1].listen(s)
    got: list = []
    t = threading.Thread(target=lambda: got.append(p[1].accept(s)))
    t.start()
    ret = p[0].connect(s, token)
    t.join(60)
    assert ret.status == OK and got and got[0].status == OK, (ret, got, p[0].errors, p[1].errors)


class Intruder:
    """A raw RC QP pair: ``qp`` (the intruder's, in a context and PD of its
    own, with a buffer ``mr``) connected to ``responder``, a QP in the
    victim's PD. The verbs objects of a try are made once and reused: a
    sweep is 514 tries. ``close`` releases both sides, children first."""

    def __init__(self, verbs, lab, victim) -> None:
        import pyverbs.enums as e
        from pyverbs.addr import AHAttr, GID, GlobalRoute
        from pyverbs.cq import CQ
        from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr
        from pyverbs.wr import SGE, SendWR

        self.v, self.e = verbs, e
        self.rig = verbs.Rig(lab)
        self.mr = self.rig.mr(PAGE, e.IBV_ACCESS_LOCAL_WRITE)
        self.qp, self.cq = self.rig.rc_qp()
        self.rcq = CQ(victim.dev.ctx, 16)
        init = QPInitAttr(qp_type=e.IBV_QPT_RC, scq=self.rcq, rcq=self.rcq,
                          cap=QPCap(max_send_wr=8, max_recv_wr=8, max_send_sge=1, max_recv_sge=1))
        self.init = QPAttr(port_num=verbs.PORT)
        self.init.qp_access_flags = verbs.QP_ACCESS
        self.responder = QP(victim.dev.pd, init, self.init)
        self.reset = QPAttr()
        self.reset.qp_state = e.IBV_QPS_RESET
        # INIT -> RTR -> RTS attributes, one set per QP, towards the other
        route = AHAttr(port_num=verbs.PORT, is_global=1,
                       gr=GlobalRoute(dgid=GID(self.rig.gid), sgid_index=lab.gid_index))
        self.rts = {}
        for qp, other in ((self.qp, self.responder), (self.responder, self.qp)):
            a = QPAttr(port_num=verbs.PORT)
            a.qp_access_flags = verbs.QP_ACCESS
            a.path_mtu = e.IBV_MTU_1024
            a.dest_qp_num = other.qp_num
            a.max_dest_rd_atomic = a.max_rd_atomic = 1
            a.min_rnr_timer, a.timeout, a.retry_cnt, a.rnr_retry = 12, 14, 7, 7
            a.ah_attr = route
            self.rts[qp] = a
        self.psn = 0x100
        self._connect()
        self.wrs = {}
        for write in (True, False):
            op = e.IBV_WR_RDMA_WRITE if write else e.IBV_WR_RDMA_READ
            self.wrs[write] = SendWR(wr_id=0, opcode=op, num_sge=1, sg=[SGE(self.mr.buf, N, self.mr.lkey)],
                                     send_flags=e.IBV_SEND_SIGNALED)
        self.tries = 0

    def _connect(self) -> None:
        """Both QPs from INIT to RTS, on fresh PSNs, so that nothing of a
        refused try is taken for the next."""
        self.psn = (self.psn + 0x1000) & 0xFFFFFF
        a, b = self.psn, (self.psn + 0x800) & 0xFFFFFF
        for qp, mine, theirs in ((self.qp, a, b), (self.responder, b, a)):
            attr = self.rts[qp]
            attr.sq_psn, attr.rq_psn = mine, theirs
            qp.to_rts(attr)

    def _recover(self) -> None:
        for qp in (self.qp, self.responder):
            qp.modify(self.reset, self.e.IBV_QP_STATE)
            qp.to_init(self.init)
        while self.cq.poll(1)[0]:
            pass
        self._connect()

    def attempt(self, write: bool, key: int, addr: int) -> int:
        """One RDMA WRITE (our pattern to ``addr``) or READ (``addr`` into
        our buffer) of N bytes under ``key``: its completion status; the QP
        pair is ready for the next try afterwards."""
        self.tries += 1
        self.mr.write(b"\xa5" * N, N)
        wr = self.wrs[write]
        wr.wr_id = self.tries
        wr.set_wr_rdma(key, addr)
        self.qp.post_send(wr)
        wc = self.v.poll_one(self.cq)
        assert wc.wr_id == self.tries
        if wc.status != self.e.IBV_WC_SUCCESS:
            self._recover()
        return wc.status

    def close(self) -> None:
        for obj in (self.responder, self.rcq):
            obj.close()
        self.rig.close()


def mr_key(p, buf: int) -> int:
    """The key of the MR under the victim's registration of ``buf``."""
    [r] = [r for r in p.table if r.addr == buf]
    return r.mr.lkey


@clause("RREG-02", "RDEREG-02", "CACHE-03")
def test_no_key_of_the_mr_reaches_the_buffer(hosts, verbs, lab):
    from sanspi.impl.interface import WsaBufEx
    from sanspi.impl.verbs import seal, unseal

    p0, victim = hosts
    buf = victim.memory.base
    victim.memory.write(buf, bytes(range(256)) * (PAGE // 256))
    before = victim.memory.read(buf, PAGE)
    src = p0.memory.base
    p0.memory.write(src, b"\x5a" * PAGE)
    h0 = [p0.register_memory(1, src, PAGE, MEM_READWRITE).value]
    refused: list[str] = []
    #: Every way in that worked, in every phase (all are listed when the
    #: test fails, and the victim's bytes are put back after each).
    breaches: list[str] = []

    def changed(phase: str, how: str) -> None:
        if victim.memory.read(buf, PAGE) != before:
            breaches.append(f"{phase}: {how} changed the victim's bytes")
            victim.memory.write(buf, before)

    def through_socket_1(desc: bytes, key: int, phase: str) -> None:
        """Host 0 on socket 1 writes with ``desc``'s fields but the MR's key,
        sealed for socket 1 (what a peer that knows that connection's key
        can send): refused by the victim's rxe, the connection then down."""
        fields = list(unseal(p0._eps[0].codec.peer_key, desc))
        fields[3] = key
        lie = seal(p0._eps[1].codec.peer_key, *fields)
        ret = p0.rdma_write(1, [WsaBufEx(N, src, h0[0])], lie, 0)
        changed(phase, "socket 1's WRITE")
        if ret.status != WSAECONNRESET:
            breaches.append(f"{phase}: socket 1's WRITE with the MR's key {key:#x} gave {ret}")
            return
        refused.append(f"{phase} socket 1 {key:#x}")
        for h in (p0, victim):
            assert h.close(1).status == OK
        connect(hosts, 1)
        h0[0] = p0.register_memory(1, src, PAGE, MEM_READWRITE).value

    def raw_sweep(index: int, window_key: int | None, phase: str) -> None:
        intruder = Intruder(verbs, lab, victim)
        try:
            keys = [index << 8 | low for low in range(256)] + ([window_key] if window_key else [])
            for key in keys:
                for write in (True, False):
                    op = "WRITE" if write else "READ"
                    status = intruder.attempt(write, key, buf)
                    changed(phase, f"raw {op} {key:#x}")
                    if status == verbs.e.IBV_WC_SUCCESS:
                        breaches.append(f"{phase}: raw RDMA {op} with key {key:#x} from another QP of the "
                                        f"victim's PD succeeded")
                    elif not write and intruder.mr.read(N, 0) != b"\xa5" * N:
                        breaches.append(f"{phase}: a refused READ with key {key:#x} brought bytes")
                    else:
                        refused.append(f"{phase} {op} {key:#x}")
        finally:
            intruder.close()

    # live: the window works for its own connection, and nothing else does
    reg = victim.register_rdma_memory(0, buf, PAGE, MEM_READWRITE, 32)
    assert reg.status == OK
    desc = reg.value.descriptor
    key = mr_key(victim, buf)
    index = key >> 8
    h00 = p0.register_memory(0, src, PAGE, MEM_READWRITE).value
    assert p0.rdma_read(0, [WsaBufEx(N, src + PAGE - N, h00)], desc, 0).status == OK  # the window works
    assert p0.memory.read(src + PAGE - N, N) == before[:N]
    window = unseal(p0._eps[0].codec.peer_key, desc)[3]
    through_socket_1(desc, key, "live")
    raw_sweep(index, window, "live")

    # deregistered: the entry is cached, its MR still registered
    assert victim.deregister_rdma_memory(0, desc).status == OK
    through_socket_1(desc, key, "cached")
    raw_sweep(index, window, "cached")

    # exposed again from the cache (the same MR, a new window)
    reg = victim.register_rdma_memory(0, buf, PAGE, MEM_READWRITE, 32)
    assert reg.status == OK and mr_key(victim, buf) == key, "not served from the cache"
    desc2 = reg.value.descriptor
    window2 = unseal(p0._eps[0].codec.peer_key, desc2)[3]
    through_socket_1(desc2, key, "re-exposed")
    raw_sweep(index, window2, "re-exposed")
    assert victim.deregister_rdma_memory(0, desc2).status == OK

    # released by the cache callback: the MR is gone
    assert victim.cache_callback(buf, PAGE).status == OK
    raw_sweep(index, None, "released")

    assert not breaches, f"{len(breaches)} ways in worked:\n" + "\n".join(breaches)
    assert victim.memory.read(buf, PAGE) == before
    assert len(refused) == 3 + 2 * (3 * 257 + 256)
