"""The hostile peer on the software provider's fabric (impl/sim.py).

It attaches a NIC of its own to the victim's ``SimFabric``, connects the way
``SimProvider.connect`` does (the listener's token names its queue pair,
and the connecting side tells it its own), and then puts requests of its
own making on the wire: any opcode, key, address and length, the header
``SimNic.post`` builds. Its local buffers are pages of host 1's address
space, read and written directly (the hostile peer owns its NIC).
"""

from __future__ import annotations

import itertools
from typing import Any

from sanspi.attack.host import CLOSED, CONNECTED, ERRORED, Completion
from sanspi.impl.interface import Ret
from sanspi.impl.sim import OP_READ, OP_WRITE, SimNic
from sanspi.spi import MEM_READ, MEM_READWRITE, MEM_WRITE, OK, WSAEFAULT, WSAEINVAL, WSAENOTCONN


class SimHostilePeer:
    name = "sim"

    def __init__(self, honest: Any) -> None:
        self.fabric = honest.nic.fabric
        self.memory = honest.memory
        self.nic = SimNic(self.fabric)
        self.qps: dict[int, Any] = {}
        self.buffers: dict[int, tuple[int, int, int]] = {}  # handle -> (socket, addr, length)
        self._handles = itertools.count(2**48)

    def connect(self, s: int, token: bytes) -> Ret:
        dest = self.fabric.listeners.pop(token, None)
        if dest is None or s in self.qps:
            return Ret(WSAENOTCONN, 0)
        qp = self.qps[s] = self.nic.create_qp()
        qp.peer = dest
        listener = self.fabric.nics[dest[0]].qps[dest[1]]
        listener.peer = (self.nic.nid, qp.qpn)
        listener.peered.set()
        return Ret(OK, 0)

    def close(self, s: int) -> Ret:
        qp = self.qps.pop(s, None)
        for h in [h for h, b in self.buffers.items() if b[0] == s]:
            del self.buffers[h]
        if qp is None:
            return Ret(WSAENOTCONN, 0)
        self.nic.destroy_qp(qp)
        return Ret(OK, 0)

    def state(self, s: int) -> int:
        qp = self.qps.get(s)
        return CLOSED if qp is None else ERRORED if qp.error else CONNECTED

    def register(self, s: int, buf: int, length: int, flags: int) -> Ret:
        if self.state(s) != CONNECTED:
            return Ret(WSAENOTCONN, 0)
        if flags not in (MEM_READ, MEM_WRITE, MEM_READWRITE) or length < 1:
            return Ret(WSAEINVAL, 0)
        if self.memory.segments(buf, length) is None:
            return Ret(WSAEFAULT, 0)
        h = next(self._handles)
        self.buffers[h] = (s, buf, length)
        return Ret(OK, h)

    def deregister(self, s: int, handle: Any) -> Ret:
        if self.buffers.get(handle, (None,))[0] != s:
            return Ret(WSAEINVAL, 0)
        del self.buffers[handle]
        return Ret(OK, 0)

    def post(self, s: int, write: bool, rkey: int, va: int, sges: list[tuple[int, int, Any]]) -> Completion:
        qp = self.qps[s]
        total = sum(n for _, n, _ in sges)
        if write:
            payload = b"".join(self.memory.read(a, n) for a, n, _ in sges)
            ok, _ = self.nic.post(qp, OP_WRITE, rkey, va % 2**64, payload)
        else:
            ok, data = self.nic.post(qp, OP_READ, rkey, va % 2**64, length=total)
            at = 0
            for a, n, _ in sges if ok else ():
                self.memory.write(a, data[at:at + n])
                at += n
        return Completion(ok, "ACK" if ok else "NAK (the responder refused it)")

    def resources(self) -> dict[str, int]:
        """Queue pairs and bound windows on every NIC of the fabric (the
        victim's, its honest peer's and this one's)."""
        nics = list(self.fabric.nics.values())
        return {"qp": sum(len(n.qps) for n in nics), "window": sum(len(n.windows) for n in nics)}

    def shutdown(self) -> None:
        for s in list(self.qps):
            self.close(s)
