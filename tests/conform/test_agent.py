"""The two-host campaign's agent (conform/agent.py) on this host, no rxe: the
agent serves software providers in a thread on 127.0.0.1 and the campaign
drives host 1 through RemoteProvider. The software providers of one pair
share a SimFabric (their wire), so agent and client share this process."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from sanspi.conform import agent
from sanspi.conform.campaign import model_config, run_campaign
from sanspi.conform.providers import SIM_CAPABILITIES
from sanspi.conform.world import Divergence, World
from sanspi.impl.interface import AddressSpace, Provider
from sanspi.impl.sim import SimFabric, SimProvider, sim_pair
from sanspi.impl.simmem import SimMemory

PAGES = 4
CFG = model_config(SIM_CAPABILITIES, pages=PAGES)
BASE = 0x7F3A_0000_0000  # sim_pair's: host h's page 0 is at BASE + h * 2**32


class Served:
    """An agent in a thread, serving host 1 on the fabric of the last host 0."""

    def __init__(self, provider_class=SimProvider, **deadlines) -> None:
        self.fabric = SimFabric()
        self.provider_class = provider_class
        self.made: list[SimProvider] = []
        self.status: list = []
        bound = threading.Event()
        port: list[int] = []

        def run() -> None:
            try:
                self.status.append(agent.serve("127.0.0.1", 0, self.host1, on_listen=lambda p: (
                    port.append(p), bound.set()), **deadlines))
            except agent.AgentError as exc:
                self.status.append(exc)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert bound.wait(10), "the agent did not listen"
        self.port = port[0]

    def host1(self, pages: int) -> SimProvider:
        p = self.provider_class(self.fabric, SIM_CAPABILITIES, SimMemory(pages, base=BASE + 2**32))
        self.made.append(p)
        return p

    def link(self) -> agent.AgentLink:
        return agent.connect("127.0.0.1", self.port, deadline_s=10)

    def factory(self, link: agent.AgentLink):
        def pair():
            self.fabric = SimFabric()  # a fresh wire per example, as sim_pair makes
            host0 = SimProvider(self.fabric, SIM_CAPABILITIES, SimMemory(PAGES, base=BASE))
            return host0, agent.RemoteProvider(link, PAGES)

        return pair

    def finished(self, within: float = 10.0):
        self.thread.join(within)
        assert not self.thread.is_alive(), "the agent is still serving"
        return self.status[0]


def test_campaign_through_the_agent_equals_the_direct_one():
    served = Served()
    link = served.link()
    try:
        remote = run_campaign(served.factory(link), CFG, examples=15, steps=30, seed=4, use_database=False)
    finally:
        link.bye()
    direct = run_campaign(lambda: sim_pair(SIM_CAPABILITIES, PAGES), CFG, examples=15, steps=30, seed=4,
                          use_database=False)
    assert remote.ok and direct.ok, remote.divergence or direct.divergence
    assert (remote.examples, remote.steps, remote.coverage) == (direct.examples, direct.steps, direct.coverage)
    assert {"rdma_write", "rdma_read", "connect"} <= {name for name, _, _ in remote.coverage.outcomes}
    assert served.finished() == 0
    assert len(served.made) >= remote.examples  # a fresh host 1 every example


def test_the_agent_reports_its_host_and_answers_attributes():
    served = Served()
    link = served.link()
    try:
        assert set(link.call("hello")) == {"kernel", "device"}
        p = agent.RemoteProvider(link, PAGES)
        assert isinstance(p, Provider) and isinstance(p.memory, AddressSpace)
        assert (p.name, p.capabilities) == ("sim", SIM_CAPABILITIES)
        assert (p.memory.base, p.memory.page_size, p.memory.pages) == (BASE + 2**32, 4096, PAGES)
        p.memory.alloc(0, 1)
        p.memory.write(p.memory.base + 10, b"abc")
        assert p.memory.read(p.memory.base + 9, 5) == b"\0abc\0"
        with pytest.raises(ValueError, match="already mapped"):  # memory errors come back as themselves
            p.memory.alloc(0, 1)
        ret = p.get_extension_function(b"\0" * 16, 8)  # an unknown GUID: a code, not a function
        assert ret.status != 0 and ret.value is None
        newer = agent.RemoteProvider(link, PAGES)
        with pytest.raises(RuntimeError, match="replaced"):  # the old host 1 is gone
            p.memory.read(p.memory.base, 1)
        p.shutdown()  # idempotent, even when replaced
        assert newer.startup_ex(0x0202).status == 0
    finally:
        link.bye()
    assert served.finished() == 0


def test_a_provider_exception_comes_back_and_the_agent_keeps_serving():
    class Raising(SimProvider):
        def cache_callback(self, addr, size):
            raise RuntimeError("boom")

    served = Served(Raising)
    link = served.link()
    try:
        w = World(served.factory(link)(), CFG)
        w.step("startup_ex", host=1, major=2, minor=2)
        with pytest.raises(Divergence, match=r"cache_callback raised RuntimeError: boom"):
            w.step("cache_callback", host=1, addr=0, size=10)
        step = w.step("alloc", host=1, page=0, npages=1)  # still serving
        assert step.status == 0
    finally:
        link.bye()
    assert served.finished() == 0


def test_an_exception_that_cannot_travel_comes_back_as_remote_error():
    class Odd(Exception):
        def __reduce__(self):
            raise TypeError("not picklable")

    class Raising(SimProvider):
        def close(self, s):
            raise Odd("local class")

    served = Served(Raising)
    link = served.link()
    try:
        p = agent.RemoteProvider(link, PAGES)
        with pytest.raises(agent.RemoteError, match="Odd: local class"):
            p.close(0)
    finally:
        link.bye()
    assert served.finished() == 0


def test_the_agent_exits_with_an_error_when_the_link_drops():
    served = Served()
    link = served.link()
    agent.RemoteProvider(link, PAGES)
    link.sock.close()  # guest 0 died: no bye
    status = served.finished()
    assert isinstance(status, agent.AgentError) and "before bye" in str(status)
    assert served.made and not served.made[-1].sockets  # its provider was shut down


def test_the_agent_gives_up_on_a_silent_link_and_on_no_client():
    served = Served(idle_s=0.5)
    with socket.create_connection(("127.0.0.1", served.port)):  # connects, then says nothing
        status = served.finished(within=5)
    assert isinstance(status, agent.AgentError) and "timed out" in str(status)
    alone = Served(accept_s=0.3)
    status = alone.finished(within=5)
    assert isinstance(status, agent.AgentError) and "did not connect" in str(status)


def test_a_lost_agent_is_known_as_such_after_the_campaign():
    served = Served()
    link = served.link()
    pairs = served.factory(link)
    made = []

    def factory():
        made.append(1)
        if len(made) == 3:
            link.sock.close()  # host 1 vanishes in the middle of the campaign
        return pairs()

    start = time.monotonic()
    result = run_campaign(factory, CFG, examples=10, steps=10, seed=1, use_database=False)
    assert not result.ok  # what the World saw; the CLI reads link.lost and calls it a lab failure
    assert link.lost and "failed during new" in link.lost
    assert time.monotonic() - start < 30  # every call after the loss fails at once
    assert isinstance(served.finished(), agent.AgentError)


def test_connect_gives_up_with_one_line_after_its_deadline():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        start = time.monotonic()
        with pytest.raises(agent.AgentError, match=f"did not answer on 127.0.0.1:{port}"):
            agent.connect("127.0.0.1", port, deadline_s=1)
    assert time.monotonic() - start < 10


def test_two_host_cli_refuses_bad_input_in_one_line(capsys, monkeypatch):
    from sanspi.cli import main

    assert main(["conform", "--provider", "sim", "--topology", "two-host"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "sanspi conform: --topology two-host is for --provider rxe (two lab guests), not sim"
    monkeypatch.setenv("SANSPI_LAB_TOPOLOGY", "two-host")  # in the lab, but not as `lab run` sets it up
    monkeypatch.delenv("SANSPI_LAB_HOST", raising=False)
    assert main(["conform", "--provider", "rxe", "--topology", "two-host"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "SANSPI_LAB_HOST" in err
