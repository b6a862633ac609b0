"""The one RDMA helper of the rxe leg: device, owned verbs objects, RC
connect, and "pattern-fill, post, bounded poll, verify".

Imported only through the ``verbs`` fixture (conftest.py), so the host leg
(``pytest -m "not rxe"``) collects these tests without pyverbs installed.
pyverbs is Debian's python3-pyverbs (rdma-core 44); nothing here is taken
from rdma-core's tests, only the shape (one owner per side, a deadline on
every poll, a known byte pattern checked after the transfer).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import pyverbs.enums as e
from pyverbs.addr import AHAttr, GID, GlobalRoute
from pyverbs.cq import CQ, cqe_status_to_str
from pyverbs.device import Context, get_device_list
from pyverbs.mr import MR
from pyverbs.pyverbs_error import PyverbsError
from pyverbs.pd import PD
from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr
from pyverbs.wr import SGE, SendWR

#: Every poll gives up after this long: under TCG an RDMA round trip is
#: ~125 us, retransmits (seen on the two-host link) add tens of ms.
POLL_DEADLINE_S = 10.0
PORT = 1
#: QP access: everything a remote may ask. The MR then decides, which is
#: exactly what the access-error test wants to see enforced.
QP_ACCESS = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ
ZERO_GID = "0000:0000:0000:0000:0000:0000:0000:0000"


@dataclass(frozen=True)
class LabDevice:
    """The device a lab run set up (SANSPI_LAB_* from ``sanspi lab run``)."""

    name: str
    gid_index: int
    kernel: str
    topology: str
    host: int
    hosts: int
    local_addr: str | None
    peer_addr: str | None


def find_device(env: dict[str, str] | os._Environ[str] = os.environ) -> LabDevice | str:
    """The lab's device, or why there is none (a sentence for the failure)."""
    try:
        names = [d.name.decode() for d in get_device_list()]
    except PyverbsError:  # libibverbs raises when the kernel has no IB at all
        names = []
    if not names:
        return ("no RDMA device on this kernel (/sys/class/infiniband is empty; "
                f"kernel {os.uname().release})")
    name = env.get("SANSPI_LAB_DEVICE") or names[0]
    if name not in names:
        return f"device {name!r} (SANSPI_LAB_DEVICE) is not among {names}"
    gid_index = int(env.get("SANSPI_LAB_GID", "1"))
    with Context(name=name) as ctx:
        state = ctx.query_port(PORT).state
        if state != e.IBV_PORT_ACTIVE:
            return f"port {PORT} of {name} is not ACTIVE (state {state})"
        gid = ctx.query_gid(PORT, gid_index).gid
        if gid == ZERO_GID:
            return f"{name} has no GID at index {gid_index} (no address on its netdev?)"
    return LabDevice(name, gid_index, env.get("SANSPI_LAB_KERNEL", os.uname().release),
                     env.get("SANSPI_LAB_TOPOLOGY", "native"),
                     int(env.get("SANSPI_LAB_HOST", "0")), int(env.get("SANSPI_LAB_HOSTS", "1")),
                     env.get("SANSPI_LAB_LOCAL_ADDR"), env.get("SANSPI_LAB_PEER_ADDR"))


def pattern(seed: int, length: int) -> bytes:
    """A known, position-dependent byte pattern (never all one value, so a
    shifted or partial copy does not pass)."""
    return bytes((seed + 7 * i + (i >> 8)) & 0xFF for i in range(length))


@dataclass(frozen=True)
class Endpoint:
    """What a peer needs to reach one QP and one MR (the out-of-band blob)."""

    qpn: int
    psn: int
    gid: str
    addr: int
    rkey: int
    length: int


class Rig:
    """Owns one context and everything made under it; ``close()`` closes in
    reverse order of creation (children first) and may be called again."""

    def __init__(self, dev: LabDevice) -> None:
        self.dev = dev
        self._owned: list = []
        self.ctx = self._own(Context(name=dev.name))
        self.pd = self._own(PD(self.ctx))

    def _own(self, obj):
        self._owned.append(obj)
        return obj

    def close(self) -> None:
        while self._owned:
            self._owned.pop().close()

    def __enter__(self) -> "Rig":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def gid(self) -> str:
        return self.ctx.query_gid(PORT, self.dev.gid_index).gid

    def mr(self, length: int, access: int) -> MR:
        return self._own(MR(self.pd, length, access))

    def rc_qp(self) -> tuple[QP, CQ]:
        """An RC QP in INIT with its own CQ (send and receive)."""
        cq = self._own(CQ(self.ctx, 16))
        init = QPInitAttr(qp_type=e.IBV_QPT_RC, scq=cq, rcq=cq,
                          cap=QPCap(max_send_wr=8, max_recv_wr=8, max_send_sge=1, max_recv_sge=1))
        attr = QPAttr(port_num=PORT)
        attr.qp_access_flags = QP_ACCESS
        return self._own(QP(self.pd, init, attr)), cq

    def connect(self, qp: QP, *, local_psn: int, remote: Endpoint) -> None:
        """INIT -> RTR -> RTS towards ``remote`` (RoCE: a global route by GID)."""
        attr = QPAttr(port_num=PORT)
        attr.qp_access_flags = QP_ACCESS
        attr.path_mtu = e.IBV_MTU_1024
        attr.dest_qp_num = remote.qpn
        attr.rq_psn = remote.psn
        attr.sq_psn = local_psn
        attr.max_dest_rd_atomic = 1
        attr.max_rd_atomic = 1
        attr.min_rnr_timer = 12
        attr.timeout = 14     # 4.096 us * 2^14 = 67 ms per try, then retransmit
        attr.retry_cnt = 7
        attr.rnr_retry = 7
        gr = GlobalRoute(dgid=GID(remote.gid), sgid_index=self.dev.gid_index)
        attr.ah_attr = AHAttr(port_num=PORT, is_global=1, gr=gr)
        qp.to_rts(attr)


def endpoint(rig: Rig, qp: QP, psn: int, mr: MR) -> Endpoint:
    return Endpoint(qp.qp_num, psn, rig.gid, mr.buf, mr.rkey, mr.length)


def qp_state(qp: QP) -> int:
    attr, _ = qp.query(e.IBV_QP_STATE)
    return attr.qp_state


def poll_one(cq: CQ, deadline_s: float = POLL_DEADLINE_S):
    """One completion, or AssertionError after the deadline (never a hang).
    Error completions are returned, not raised: the caller asserts status."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        n, wcs = cq.poll(1)
        if n:
            return wcs[0]
    raise AssertionError(f"no completion within {deadline_s} s")


def rdma(qp: QP, cq: CQ, opcode: int, local: MR, remote: Endpoint, length: int,
         *, wr_id: int = 1):
    """Post one signaled RDMA WRITE or READ of ``length`` bytes between
    ``local`` (offset 0) and ``remote`` (its start); poll its completion."""
    sge = SGE(local.buf, length, local.lkey)
    wr = SendWR(wr_id=wr_id, opcode=opcode, num_sge=1, sg=[sge],
                send_flags=e.IBV_SEND_SIGNALED)
    wr.set_wr_rdma(remote.rkey, remote.addr)
    qp.post_send(wr)
    wc = poll_one(cq)
    assert wc.wr_id == wr_id, f"completion for wr {wc.wr_id}, expected {wr_id}"
    return wc


def status_name(status: int) -> str:
    """``cqe_status_to_str`` of pyverbs, for assertion messages."""
    return f"{cqe_status_to_str(status)} ({status})"
