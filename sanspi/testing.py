"""Helpers for provider authors and scenario tests: the switch's side of a
connection, and the switch's duty before memory is freed.

    from sanspi.testing import connected_pair, free_pages

    p0, p1 = connected_pair(my_factory, sockets=2)   # started, connected on 0 and 1
    ...
    free_pages(p0, page=1, npages=1)                 # the cache callback first (MEM-04), then unmap

The lockstep World uses the same ``connect`` (conform/world.py), so a
provider that connects here connects there.
"""

from __future__ import annotations

import threading

from sanspi.impl.interface import Provider, ProviderFactory, Ret
from sanspi.spi import FN_CACHE_CALLBACK, GUIDS, OK, POINTER_SIZE, wsa_name

#: How long host 0's accept may wait for host 1's connect.
ACCEPT_TIMEOUT_S = 60.0


class ConnectError(AssertionError):
    """The two providers could not be connected as the switch connects them."""


def connect(host0: Provider, host1: Provider, s: int) -> None:
    """Connect socket ``s`` of both hosts the way the oracle does: host 0
    listens and accepts on another thread (accept may block until the peer
    arrives), host 1 connects with host 0's token. Raises ConnectError with
    what each side answered."""
    token = host0.listen(s)
    accepted: list[Ret] = []
    t = threading.Thread(target=lambda: accepted.append(host0.accept(s)), daemon=True)
    t.start()
    ret = host1.connect(s, token)
    t.join(ACCEPT_TIMEOUT_S)
    if t.is_alive() or not accepted:
        raise ConnectError(f"connection {s}: accept did not complete")
    if ret.status != OK or accepted[0].status != OK:
        raise ConnectError(f"connection {s}: connect {wsa_name(ret.status)}, accept {wsa_name(accepted[0].status)}")


def connected_pair(factory: ProviderFactory, sockets: int = 1,
                   version: int = 0x0202) -> tuple[Provider, Provider]:
    """A fresh pair from ``factory`` (host 0, host 1), both started with
    WSPStartupEx(``version``) and connected on sockets 0 .. ``sockets``-1.
    Close both with ``shutdown()``."""
    pair = factory()
    for p in pair:
        ret = p.startup_ex(version)
        if ret.status != OK:
            raise ConnectError(f"{p.name}: WSPStartupEx gave {wsa_name(ret.status)}")
    for s in range(sockets):
        connect(pair[0], pair[1], s)
    return pair


def free_pages(provider: Provider, page: int, npages: int) -> Ret:
    """Free pages of a provider's address space as the switch does (MEM-04):
    the cache callback on their range first, when the provider supplies
    one, then unmap. Returns the callback's answer (Ret(0) without a
    callback); the pages are unmapped whatever it is."""
    ret = Ret(OK)
    lookup = provider.get_extension_function(GUIDS[FN_CACHE_CALLBACK].bytes_le, POINTER_SIZE)
    if lookup.status == OK:
        mem = provider.memory
        ret = lookup.value(mem.base + page * mem.page_size, npages * mem.page_size)
    provider.memory.free(page, npages)
    return ret
