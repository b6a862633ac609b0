"""Two-host smoke test: an RDMA WRITE across the guests' UDP link.

Runs in both guests of ``sanspi lab run --topology two-host`` (SANSPI_LAB_HOST
says which). Host 0 listens on TCP, host 1 connects (retrying until host 0
is up); they swap QP number, PSN, GID and MR address/rkey as a JSON line,
connect RC, host 1 WRITEs a pattern into host 0's MR, and host 0 checks the
bytes and tells host 1 the verdict, so both runs fail if the bytes are wrong.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.rxe.oob import oob_channel

pytestmark = [pytest.mark.rxe, pytest.mark.two_host]

OOB_PORT = 18515
SIZE = 8192
PSNS = (0x100, 0x200)


@pytest.fixture
def role(lab):
    if lab.hosts != 2 or lab.peer_addr is None or lab.local_addr is None:
        pytest.fail("a two-host test needs `sanspi lab run --topology two-host` "
                    f"(this run: topology {lab.topology}, {lab.hosts} host)", pytrace=False)
    return lab.host


def _send(f, obj) -> None:
    f.write(json.dumps(obj) + "\n")
    f.flush()


def _recv(f):
    line = f.readline()
    assert line, "the peer closed the out-of-band channel"
    return json.loads(line)


def test_rdma_write_across_hosts(verbs, lab, role):
    e = verbs.e
    data = verbs.pattern(0x42, SIZE)
    # Separate reader and writer: a text "rw" file drops the lines it has
    # read ahead whenever it writes (TextIOWrapper resets its decoder).
    with verbs.Rig(lab) as rig, oob_channel(lab, OOB_PORT) as conn, \
            conn.makefile("r") as rf, conn.makefile("w") as wf:
        qp, cq = rig.rc_qp()
        if role == 0:
            mr = rig.mr(SIZE, e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE)
            mr.write(b"\0" * SIZE, SIZE)
        else:
            mr = rig.mr(SIZE, e.IBV_ACCESS_LOCAL_WRITE)
            mr.write(data, SIZE)
        mine = verbs.endpoint(rig, qp, PSNS[role], mr)
        _send(wf, dataclasses.asdict(mine))
        theirs = verbs.Endpoint(**_recv(rf))
        rig.connect(qp, local_psn=PSNS[role], remote=theirs)
        _send(wf, {"rts": True})
        assert _recv(rf) == {"rts": True}
        if role == 1:
            wc = verbs.rdma(qp, cq, e.IBV_WR_RDMA_WRITE, mr, theirs, SIZE)
            assert wc.status == e.IBV_WC_SUCCESS, verbs.status_name(wc.status)
            _send(wf, {"written": SIZE})
            verdict = _recv(rf)
            assert verdict == {"bytes_ok": True}, f"host 0 saw other bytes: {verdict}"
        else:
            assert _recv(rf) == {"written": SIZE}
            ok = mr.read(SIZE, 0) == data
            _send(wf, {"bytes_ok": ok})
            assert ok, "host 1's RDMA WRITE did not land as written"
