"""sanspi.testing: the helpers a provider author's tests use, used here on
the software provider."""

from __future__ import annotations

import pytest

from sanspi.impl.interface import Capabilities, Ret
from sanspi.impl.sim import SimFabric, SimMemory, SimProvider, sim_pair
from sanspi.model.constants import MEM_READ, OK, WSAEFAULT, WSAEINVAL, WSAENOTCONN
from sanspi.testing import ConnectError, connected_pair, free_pages


@pytest.mark.clause("SOCK-01")
def test_connected_pair_is_started_and_connected_on_every_socket():
    p0, p1 = connected_pair(lambda: sim_pair(Capabilities(), pages=2), sockets=2)
    try:
        for p in (p0, p1):
            p.memory.alloc(0, 1)
            for s in (0, 1):
                assert p.register_memory(s, p.memory.base, 16, MEM_READ).status == OK
            assert p.register_memory(2, p.memory.base, 16, MEM_READ).status == WSAENOTCONN
    finally:
        for p in (p0, p1):
            p.shutdown()


def test_a_provider_that_will_not_accept_is_named():
    class Refuses(SimProvider):
        def accept(self, s, timeout=30.0):
            return Ret(WSAEINVAL)

    def pair():
        fabric = SimFabric()
        return tuple(Refuses(fabric, Capabilities(), SimMemory(2)) for _ in (0, 1))

    with pytest.raises(ConnectError, match="connection 0: connect 0, accept WSAEINVAL"):
        connected_pair(pair)


@pytest.mark.clause("MEM-04", "CACHE-04", "CACHE-05")
def test_free_pages_calls_the_callback_first():
    p0, p1 = connected_pair(lambda: sim_pair(Capabilities(), pages=2))
    p0.memory.alloc(0, 2)
    h = p0.register_memory(0, p0.memory.base, 64, MEM_READ).value
    assert free_pages(p0, 1, 1).status == WSAEINVAL  # nothing cached there; the page goes anyway
    with pytest.raises(ValueError):
        p0.memory.read(p0.memory.base + 4096, 1)
    assert p0.deregister_memory(0, h).status == OK  # cached now
    assert free_pages(p0, 0, 1).status == OK  # the callback released it before the unmap
    assert p0.cache_callback(p0.memory.base, 64).status == WSAEINVAL  # nothing left to release
    p0.memory.alloc(0, 1)
    live = p0.register_memory(0, p0.memory.base, 64, MEM_READ).value
    assert live is not None
    assert p0.cache_callback(p0.memory.base, 64).status == WSAEFAULT
