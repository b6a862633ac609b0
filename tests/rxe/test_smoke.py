"""Smoke test of the lab's rxe device with pyverbs alone (no sanspi provider).

Loopback: two RC QPs on the one device connected to each other. Each test
gets a fresh pair, because the access-error test leaves its requester in ERR.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.rxe

SIZE = 4096


@pytest.fixture
def pair(verbs, lab):
    """Two connected RC QPs (a -> b) on one rig; closed children first."""
    with verbs.Rig(lab) as rig:
        qa, cqa = rig.rc_qp()
        qb, cqb = rig.rc_qp()
        # Fixed PSNs, distinct per side: the test is deterministic.
        psn_a, psn_b = 0x1234, 0x5678
        # The connect step needs only qpn/psn/gid; the MR fields are unused.
        rig.connect(qa, local_psn=psn_a, remote=verbs.Endpoint(qb.qp_num, psn_b, rig.gid, 0, 0, 0))
        rig.connect(qb, local_psn=psn_b, remote=verbs.Endpoint(qa.qp_num, psn_a, rig.gid, 0, 0, 0))
        yield rig, qa, cqa


def test_device_is_up(verbs, lab):
    """The lab's device is there, ACTIVE, with an IPv4-mapped GID."""
    with verbs.Rig(lab) as rig:
        assert rig.gid.startswith("0000:0000:0000:0000:0000:ffff:"), rig.gid
        assert rig.ctx.query_port(verbs.PORT).state == verbs.e.IBV_PORT_ACTIVE


def test_rdma_write_moves_the_bytes(verbs, pair):
    """WRITE of 3000 bytes lands them, in order, and nothing past them."""
    e = verbs.e
    rig, qa, cqa = pair
    src = rig.mr(SIZE, e.IBV_ACCESS_LOCAL_WRITE)
    dst = rig.mr(SIZE, e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE)
    data = verbs.pattern(0x11, SIZE)
    src.write(data, SIZE)
    dst.write(b"\0" * SIZE, SIZE)
    n = 3000
    wc = verbs.rdma(qa, cqa, e.IBV_WR_RDMA_WRITE, src, verbs.endpoint(rig, qa, 0, dst), n)
    assert wc.status == e.IBV_WC_SUCCESS, verbs.status_name(wc.status)
    got = dst.read(SIZE, 0)
    assert got[:n] == data[:n]
    assert got[n:] == b"\0" * (SIZE - n), "bytes past the write's length changed"


def test_rdma_read_moves_the_bytes(verbs, pair):
    """READ of a whole MR copies it into the local MR."""
    e = verbs.e
    rig, qa, cqa = pair
    dst = rig.mr(SIZE, e.IBV_ACCESS_LOCAL_WRITE)
    src = rig.mr(SIZE, e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_READ)
    data = verbs.pattern(0x5A, SIZE)
    src.write(data, SIZE)
    dst.write(b"\xee" * SIZE, SIZE)
    wc = verbs.rdma(qa, cqa, e.IBV_WR_RDMA_READ, dst, verbs.endpoint(rig, qa, 0, src), SIZE)
    assert wc.status == e.IBV_WC_SUCCESS, verbs.status_name(wc.status)
    assert dst.read(SIZE, 0) == data


def test_read_without_remote_read_is_refused(verbs, pair):
    """READ of an MR registered without REMOTE_READ: the completion is
    IBV_WC_REM_ACCESS_ERR, nothing is copied, the requester QP is in ERR."""
    e = verbs.e
    rig, qa, cqa = pair
    dst = rig.mr(SIZE, e.IBV_ACCESS_LOCAL_WRITE)
    src = rig.mr(SIZE, e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE)
    src.write(verbs.pattern(0x33, SIZE), SIZE)
    dst.write(b"\xee" * SIZE, SIZE)
    wc = verbs.rdma(qa, cqa, e.IBV_WR_RDMA_READ, dst, verbs.endpoint(rig, qa, 0, src), SIZE)
    assert wc.status == e.IBV_WC_REM_ACCESS_ERR, verbs.status_name(wc.status)
    assert dst.read(SIZE, 0) == b"\xee" * SIZE
    assert verbs.qp_state(qa) == e.IBV_QPS_ERR


def test_rig_close_is_repeatable(verbs, lab):
    """close() twice is harmless, and what the rig owned is closed."""
    rig = verbs.Rig(lab)
    mr = rig.mr(SIZE, verbs.e.IBV_ACCESS_LOCAL_WRITE)
    qp, _ = rig.rc_qp()
    rig.close()
    rig.close()
    with pytest.raises(Exception):
        mr.read(1, 0)  # a closed MR refuses to be used
    assert rig._owned == []
