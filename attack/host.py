"""Host 1 of an attack: the victim's honest peer on every socket but the
attacked one, and the hostile peer on that one.

To the World (conform/world.py) this is one provider (impl/interface.py),
so the model, which knows two hosts joined by connections, sees the
attacked connection as one more connection with host 1: the victim's
switch cannot tell a hostile peer from an honest one, and the model says
what the victim must do whoever is at the other end. The hostile peer
answers the few SPI calls the World makes at its end (connect, close, the
registration of its own buffer, the empty RDMA write that reads a
connection's state) from its own queue pair; what it does besides, its raw
operations (``raw``), the attack's World judges (attack/world.py).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import attrs

from sanspi.conform.agent import RemoteProvider
from sanspi.impl.interface import Ret
from sanspi.spi import (
    FN_DEREGISTER_MEMORY, FN_DEREGISTER_RDMA_MEMORY, FN_RDMA_READ, FN_RDMA_WRITE, FN_REGISTER_MEMORY,
    FN_REGISTER_RDMA_MEMORY, OK, WSAECONNABORTED, WSAEINVAL, WSAENOTCONN, function_index,
)

#: The one connection the hostile peer holds (the model's connections 0 and
#: 1 join the victim and its honest peer).
ATTACK_SOCKET = 2

CLOSED, CONNECTED, ERRORED = 0, 1, 2


@attrs.frozen
class Completion:
    """A raw operation's end: done, or refused by the victim's responder
    (the hostile peer's queue pair is then in the error state)."""

    ok: bool
    status: str


class HostilePeer(Protocol):
    """The raw side: the provider's own connection set-up, then raw READs
    and WRITEs with any key, address and length (attack/peer_*.py)."""

    def connect(self, s: int, token: bytes) -> Ret: ...
    def close(self, s: int) -> Ret: ...
    def register(self, s: int, buf: int, length: int, flags: int) -> Ret: ...
    def deregister(self, s: int, handle: Any) -> Ret: ...
    def state(self, s: int) -> int: ...
    def post(self, s: int, write: bool, rkey: int, va: int, sges: list[tuple[int, int, Any]]) -> Completion: ...
    def resources(self) -> dict[str, int]: ...
    def shutdown(self) -> None: ...


class PeerHost:
    """impl.interface.Provider for host 1: ``honest`` answers every socket but
    ``ATTACK_SOCKET``, where ``peer`` answers."""

    def __init__(self, honest: Any, peer: HostilePeer) -> None:
        self.honest, self.peer = honest, peer
        self.name = honest.name
        self.capabilities = honest.capabilities
        self.memory = honest.memory
        #: Resource counts before anything was made (the leak check's baseline).
        self.baseline = peer.resources()

    def _route(self, s: Any, mine: Callable, theirs: Callable, *args: Any) -> Ret:
        return mine(s, *args) if s == ATTACK_SOCKET else theirs(s, *args)

    # --- what the World calls -------------------------------------------------------

    def startup_ex(self, version: int, wsp_data: bool = True, proc_table: bool = True) -> Ret:
        return self.honest.startup_ex(version, wsp_data, proc_table)

    def get_extension_function(self, guid: bytes, out_len: int = 8) -> Ret:
        ret = self.honest.get_extension_function(guid, out_len)
        if ret.status != OK or not callable(ret.value):
            return ret
        theirs = ret.value
        mine = {
            FN_REGISTER_MEMORY: self.peer.register,
            FN_DEREGISTER_MEMORY: self.peer.deregister,
            FN_REGISTER_RDMA_MEMORY: lambda s, *a: Ret(WSAEINVAL, None),  # it exposes nothing
            FN_DEREGISTER_RDMA_MEMORY: lambda s, *a: Ret(WSAEINVAL, 0),
            FN_RDMA_WRITE: self._spi_rdma,
            FN_RDMA_READ: self._spi_rdma,
        }.get(function_index(guid) if isinstance(guid, (bytes, str)) else -1)
        if mine is None:  # the cache callback has no socket: the honest peer's
            return ret

        def routed(s: Any, *args: Any) -> Ret:
            return self._route(s, mine, theirs, *args)

        routed.__name__ = getattr(theirs, "__name__", "extension_function")
        return Ret(OK, routed)

    def _spi_rdma(self, s: int, buffers: Any, target: Any, offset: Any) -> Ret:
        """The hostile end's answer to an RDMA call through the SPI: the
        connection's state as its queue pair has it (CONN-02), else WSAEINVAL
        (it makes its transfers raw, never through the SPI)."""
        state = self.peer.state(s)
        return Ret({CLOSED: WSAENOTCONN, ERRORED: WSAECONNABORTED}.get(state, WSAEINVAL), 0)

    def listen(self, s: int) -> bytes:
        return b"" if s == ATTACK_SOCKET else self.honest.listen(s)

    def accept(self, s: int) -> Ret:
        return Ret(WSAEINVAL, 0) if s == ATTACK_SOCKET else self.honest.accept(s)

    def connect(self, s: int, token: bytes) -> Ret:
        return self._route(s, self.peer.connect, self.honest.connect, token)

    def close(self, s: int) -> Ret:
        return self._route(s, self.peer.close, self.honest.close)

    def send(self, s: int, buffers: list) -> Ret:
        return Ret(WSAEINVAL, 0) if s == ATTACK_SOCKET else self.honest.send(s, buffers)

    def recv(self, s: int, buffer: Any) -> Ret:
        return Ret(WSAEINVAL, 0) if s == ATTACK_SOCKET else self.honest.recv(s, buffer)

    def recv_done(self, s: int) -> Ret:
        return Ret(WSAEINVAL, 0) if s == ATTACK_SOCKET else self.honest.recv_done(s)

    def shutdown(self) -> None:
        self.honest.shutdown()
        self.peer.shutdown()

    # --- what the attack's World calls --------------------------------------------------

    def raw(self, write: bool, rkey: int, va: int, sges: list[tuple[int, int, Any]]) -> Completion:
        return self.peer.post(ATTACK_SOCKET, write, rkey, va, sges)

    def leaked(self) -> dict[str, tuple[int, int]]:
        """After ``shutdown``: every resource count not back at its baseline."""
        now = self.peer.resources()
        return {k: (self.baseline[k], now[k]) for k in self.baseline if now.get(k) != self.baseline[k]}


class RemotePeerHost(RemoteProvider):
    """A PeerHost in the other lab guest, behind conform's agent."""

    def raw(self, write: bool, rkey: int, va: int, sges: list[tuple[int, int, Any]]) -> Completion:
        return self._call("provider", "raw", write, rkey, va, sges)

    def leaked(self) -> dict[str, tuple[int, int]]:
        return self._call("provider", "leaked")
