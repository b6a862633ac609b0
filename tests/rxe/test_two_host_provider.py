"""The verbs provider across two guests (``sanspi lab run --topology two-host``).

Each guest runs one VerbsProvider (its host index is SANSPI_LAB_HOST) and
the same model. The scenario is one list of steps; the host a step belongs
to runs it on its provider, checks the status against the model's allowed
outcomes and sends the result to the other guest over a TCP side channel,
which takes the same model step. So both models stay in step and each host
checks its own provider and memory against them. The side channel also
carries the connect token and descriptors, as the switch would.
"""

from __future__ import annotations

import json

import pytest

from tests.rxe.oob import oob_channel

from sanspi.impl.interface import WsaBufEx
from sanspi.model.constants import (
    ERRORED, MEM_READWRITE, OK, WSAECONNRESET, WSAENOTCONN,
)
from sanspi.model.machine import Model, make_args
from sanspi.model.ops import pattern_byte

pytestmark = [pytest.mark.rxe, pytest.mark.two_host]
clause = pytest.mark.clause

OOB_PORT = 18517  # not the smoke test's: its port may still be in TIME_WAIT
PAGE = 4096


class Pair:
    """This host's provider, the shared model, and the line to the peer."""

    def __init__(self, lab, provider, rf, wf) -> None:
        from tests.rxe.provider_rig import config_of

        self.me, self.p, self.rf, self.wf = lab.host, provider, rf, wf
        self.model = Model(config_of(provider.capabilities))
        self.value_of: dict[int, object] = {}  # model id -> this host's handle / any descriptor

    def tell(self, obj) -> None:
        self.wf.write(json.dumps(obj) + "\n")
        self.wf.flush()

    def hear(self):
        line = self.rf.readline()
        assert line, "the peer closed the side channel"
        return json.loads(line)

    def env(self, name: str, **kw) -> None:
        """An environment step both hosts take (alloc, app_write)."""
        host = kw["host"]
        if host == self.me:
            m = self.p.memory
            if name == "alloc":
                m.alloc(kw["page"], kw["npages"])
            else:
                m.write(m.base + kw["addr"], bytes(pattern_byte(kw["seed"], i) for i in range(kw["length"])))
        self.model.call(name, **kw)

    def spi(self, name: str, call, **kw):
        """One SPI call of host ``kw["host"]``: run and checked there, replayed here."""
        host = kw["host"]
        args = make_args(name, **kw)
        allowed = {s.status: s for s in self.model.outcomes(name, args)}
        if host == self.me:
            ret = call()
            assert ret.status in allowed, f"{name}: provider {ret.status}, model allows {sorted(allowed)}"
            value = ret.value
            if hasattr(value, "descriptor"):
                value = value.descriptor
            step = allowed[ret.status]
            if ret.status == OK and step.result and name.startswith("register"):
                self.value_of[step.result] = value
            self.tell({"status": ret.status, "desc": value.hex() if isinstance(value, bytes) else None})
        else:
            heard = self.hear()
            assert heard["status"] in allowed, f"peer's {name}: {heard['status']}, model allows {sorted(allowed)}"
            step = allowed[heard["status"]]
            if heard["desc"] is not None and step.result:
                self.value_of[step.result] = bytes.fromhex(heard["desc"])
        self.model.take(step)
        return step

    def memory_matches(self) -> None:
        m, host = self.p.memory, self.model.state.hosts[self.me]
        for page, mapped in enumerate(host.mapped):
            if mapped:
                want = host.mem[page * PAGE:(page + 1) * PAGE]
                assert m.read(m.base + page * PAGE, PAGE) == want, f"host {self.me} page {page} differs"


@clause("SOCK-01", "RREG-02", "RDMA-06", "RDMA-07", "RDEREG-02", "RDMA-08", "CONN-01", "CONN-02")
def test_register_write_read_and_revoke_across_hosts(lab):
    from sanspi.impl.verbs import VerbsProvider

    if lab.hosts != 2 or lab.peer_addr is None:
        pytest.fail("a two-host test needs `sanspi lab run --topology two-host` "
                    f"(this run: topology {lab.topology}, {lab.hosts} host)", pytrace=False)
    p = VerbsProvider()
    try:
        with oob_channel(lab, OOB_PORT) as conn, conn.makefile("r") as rf, conn.makefile("w") as wf:
            x = Pair(lab, p, rf, wf)
            me = lab.host
            for h in (0, 1):
                x.spi("startup_ex", lambda: p.startup_ex(0x0202), host=h, major=2, minor=2)
                x.env("alloc", host=h, page=0, npages=4)
            # connect: host 0 listens and hands its token over the side channel
            if me == 0:
                x.tell({"token": p.listen(0).decode()})
                assert p.accept(0).status == OK
            else:
                assert p.connect(0, x.hear()["token"].encode()).status == OK
            x.model.call("connect", conn=0)
            base = p.memory.base

            d = x.spi("register_rdma_memory",
                      lambda: p.register_rdma_memory(0, base + PAGE, 2 * PAGE, MEM_READWRITE, 32),
                      host=0, sock=0, addr=PAGE, length=2 * PAGE, flags=MEM_READWRITE, desc_len=32).result
            h = x.spi("register_memory", lambda: p.register_memory(0, base, 2 * PAGE, MEM_READWRITE),
                      host=1, sock=0, addr=0, length=2 * PAGE, flags=MEM_READWRITE).result
            x.env("app_write", host=1, addr=0, length=2 * PAGE, seed=7)
            x.env("app_write", host=0, addr=0, length=4 * PAGE, seed=100)

            def bufs(*triples):
                return [WsaBufEx(n, base + a, x.value_of.get(h)) for n, a in triples]

            s = x.spi("rdma_write", lambda: p.rdma_write(0, bufs((PAGE, 0), (100, PAGE + 5)), x.value_of[d], 10),
                      host=1, sock=0, sges=((PAGE, 0, h), (100, PAGE + 5, h)), desc=d, offset=10)
            assert s.status == OK
            s = x.spi("rdma_read", lambda: p.rdma_read(0, bufs((300, PAGE)), x.value_of[d], 2 * PAGE - 300),
                      host=1, sock=0, sges=((300, PAGE, h),), desc=d, offset=2 * PAGE - 300)
            assert s.status == OK
            x.memory_matches()
            # revoke: the peer's next write through it is refused by host 0's rxe
            x.spi("deregister_rdma_memory", lambda: p.deregister_rdma_memory(0, x.value_of[d]),
                  host=0, sock=0, rid=d)
            s = x.spi("rdma_write", lambda: p.rdma_write(0, bufs((8, 0)), x.value_of[d], 0),
                      host=1, sock=0, sges=((8, 0, h),), desc=d, offset=0)
            if me == 1:
                assert s.status == WSAECONNRESET, "the revoked window was not refused by the peer's NIC"
            assert x.model.state.hosts[0].eps[0].conn == ERRORED
            # host 0 learns it from its own QP, over the link
            s = x.spi("register_memory", lambda: p.register_memory(0, base, 8, MEM_READWRITE),
                      host=0, sock=0, addr=0, length=8, flags=MEM_READWRITE)
            assert s.status == WSAENOTCONN
            x.memory_matches()
            x.tell({"done": True})
            assert x.hear() == {"done": True}
    finally:
        p.shutdown()
    assert p.errors == []
