"""The software SAN provider: the SPI of impl/interface.py, in-process, on a
NIC written in Python. It runs anywhere and is the main job's default
provider.

It is an independent implementation of spec/: it never imports the model.
``SimNic`` does what an RDMA NIC does: memory regions with keys, type-2
memory windows bound to one queue pair, responder-side checks of key, queue
pair, access and range, remote-access errors that move both queue pairs to
the error state, posted receives that are flushed. Requests travel between
NICs over ``SimFabric`` as bytes, never as shared Python objects.
"""

from __future__ import annotations

import itertools
import struct
import threading
import zlib
from typing import Any

import attrs

from sanspi.impl.interface import Capabilities, RdmaRegistration, Ret, WsaBufEx
from sanspi.impl.simmem import SimMemory
from sanspi.spi import (
    FN_CACHE_CALLBACK, FN_DEREGISTER_MEMORY, FN_DEREGISTER_RDMA_MEMORY, FN_RDMA_READ, FN_RDMA_WRITE,
    FN_REGISTER_MEMORY, FN_REGISTER_RDMA_MEMORY, FN_UNKNOWN, HIGHEST_VERSION, LOWEST_VERSION, MEM_READ,
    MEM_READWRITE, MEM_WRITE, POINTER_SIZE, WSA_IO_PENDING, WSA_OPERATION_ABORTED, WSAECONNABORTED,
    WSAECONNRESET, WSAEFAULT, WSAEINVAL, WSAENOBUFS, WSAENOTCONN, WSAEOPNOTSUPP, WSAEPROCLIM,
    WSASYSNOTREADY, WSAVERNOTSUPPORTED, function_index,
)

OK = 0

# NIC access bits (as ibv_access_flags)
LOCAL_WRITE, REMOTE_WRITE, REMOTE_READ = 1, 2, 4

# Wire opcodes and NAK reasons
OP_WRITE, OP_READ, OP_SEND = 1, 2, 3
ACK, NAK_ACCESS, NAK_INVALID, NAK_RNR = 0, 1, 2, 3

# The RDMA descriptor: magic, version, address, length, rkey, then a CRC-32
# of those fields, padded. The check field makes a descriptor valid only byte
# for byte (RREG-02): a NIC would honour a copy whose length was enlarged.
DESC = struct.Struct("<4sHQQI")
DESC_MAGIC, DESC_VERSION, DESC_SIZE = b"SNSP", 1, 32


def encode_descriptor(addr: int, length: int, rkey: int) -> bytes:
    body = DESC.pack(DESC_MAGIC, DESC_VERSION, addr, length, rkey)
    return (body + struct.pack("<I", zlib.crc32(body))).ljust(DESC_SIZE, b"\0")


def decode_descriptor(raw: Any) -> tuple[int, int, int] | None:
    """(address, length, rkey) of a well-formed descriptor, else None."""
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != DESC_SIZE:
        return None
    body, (crc,) = bytes(raw[:DESC.size]), struct.unpack_from("<I", raw, DESC.size)
    magic, version, addr, length, rkey = DESC.unpack(body)
    if magic != DESC_MAGIC or version != DESC_VERSION or length < 1 or crc != zlib.crc32(body) \
            or any(raw[DESC.size + 4:]):
        return None
    return addr, length, rkey


# --- the NIC --------------------------------------------------------------------


@attrs.define(eq=False)
class MemoryRegion:
    addr: int
    length: int
    access: int
    segments: list  # pinned frames: (bytearray, offset, n)

    def bytes_at(self, addr: int, length: int) -> bytes | None:
        if addr < self.addr or addr + length > self.addr + self.length:
            return None
        out, pos = bytearray(), self.addr
        for frame, off, n in self.segments:
            lo, hi = max(pos, addr), min(pos + n, addr + length)
            if lo < hi:
                out += frame[off + lo - pos: off + hi - pos]
            pos += n
        return bytes(out)

    def put(self, addr: int, data: bytes) -> bool:
        if addr < self.addr or addr + len(data) > self.addr + self.length:
            return False
        pos = self.addr
        for frame, off, n in self.segments:
            lo, hi = max(pos, addr), min(pos + n, addr + len(data))
            if lo < hi:
                frame[off + lo - pos: off + hi - pos] = data[lo - addr: hi - addr]
            pos += n
        return True


@attrs.define(eq=False)
class Window:
    """A type-2 memory window: remote access to an MR through one QP only."""

    rkey: int
    mr: MemoryRegion
    qp: "QueuePair"
    access: int
    valid: bool = True


@attrs.define(eq=False)
class QueuePair:
    nic: "SimNic"
    qpn: int
    peer: tuple[int, int] | None = None  # (nic id, qpn) on the fabric
    error: bool = False
    recv: tuple[MemoryRegion, int, int] | None = None  # posted receive: (mr, addr, length)
    recv_done: tuple[int, int] | None = None  # (status, bytes) of the completed receive
    peered: threading.Event = attrs.field(factory=threading.Event)  # the connection exchange is done

    def fail(self) -> None:
        """Enter the error state; a posted receive is flushed."""
        self.error = True
        if self.recv is not None:
            self.recv, self.recv_done = None, (WSA_OPERATION_ABORTED, 0)


class SimFabric:
    """The wire between NICs: delivers a request's bytes, returns the reply's."""

    def __init__(self):
        self.nics: dict[int, SimNic] = {}
        self.listeners: dict[bytes, tuple[int, int]] = {}
        self._ids = itertools.count(1)

    def attach(self, nic: "SimNic") -> int:
        nid = next(self._ids)
        self.nics[nid] = nic
        return nid

    def transmit(self, dest: tuple[int, int], packet: bytes) -> bytes:
        nic = self.nics.get(dest[0])
        if nic is None:
            return bytes([NAK_INVALID])
        return nic.respond(dest[1], packet)


class SimNic:
    def __init__(self, fabric: SimFabric):
        self.fabric = fabric
        self.nid = fabric.attach(self)
        self.qps: dict[int, QueuePair] = {}
        self.windows: dict[int, Window] = {}
        self._qpn = itertools.count(0x11)
        self._rkey = itertools.count(0x100)  # never reused: a revoked key stays dead

    def create_qp(self) -> QueuePair:
        qp = QueuePair(self, next(self._qpn))
        self.qps[qp.qpn] = qp
        return qp

    def destroy_qp(self, qp: QueuePair) -> None:
        for w in [w for w in self.windows.values() if w.qp is qp]:
            self.invalidate(w)
        self.qps.pop(qp.qpn, None)

    def bind_window(self, mr: MemoryRegion, qp: QueuePair, access: int) -> Window:
        w = Window(next(self._rkey), mr, qp, access)
        self.windows[w.rkey] = w
        return w

    def invalidate(self, w: Window) -> None:
        w.valid = False
        self.windows.pop(w.rkey, None)

    # requester side: post, wait for the completion
    def post(self, qp: QueuePair, opcode: int, rkey: int, addr: int, payload: bytes = b"", length: int = 0):
        """(ok, data): the completion of one work request."""
        if qp.error or qp.peer is None:
            return False, b""
        head = struct.pack("<BIQI", opcode, rkey, addr, length or len(payload))
        reply = self.fabric.transmit(qp.peer, head + payload)
        if reply[:1] != bytes([ACK]):
            qp.fail()  # remote access / invalid request: the requester QP goes to ERR
            return False, b""
        return True, reply[1:]

    # responder side
    def respond(self, qpn: int, packet: bytes) -> bytes:
        qp = self.qps.get(qpn)
        if qp is None or qp.error:
            return bytes([NAK_INVALID])
        opcode, rkey, addr, length = struct.unpack_from("<BIQI", packet)
        payload = packet[struct.calcsize("<BIQI"):]
        if opcode == OP_SEND:
            return self._receive(qp, payload)
        need = REMOTE_WRITE if opcode == OP_WRITE else REMOTE_READ
        w = self.windows.get(rkey)
        if w is None or not w.valid or w.qp is not qp or not w.access & need:
            qp.fail()
            return bytes([NAK_ACCESS])
        if opcode == OP_WRITE:
            ok = w.mr.put(addr, payload)
            data = b""
        else:
            data = w.mr.bytes_at(addr, length)
            ok = data is not None
        if not ok:  # the range is checked against the region
            qp.fail()
            return bytes([NAK_ACCESS])
        return bytes([ACK]) + (data or b"")

    def _receive(self, qp: QueuePair, payload: bytes) -> bytes:
        if qp.recv is None:
            return bytes([NAK_RNR])
        mr, addr, length = qp.recv
        if len(payload) > length:
            qp.fail()
            return bytes([NAK_INVALID])
        mr.put(addr, payload)
        qp.recv, qp.recv_done = None, (OK, len(payload))
        return bytes([ACK])


# --- the provider ---------------------------------------------------------------


def _is_int(x: Any) -> bool:
    """An integer argument (spec/provider-interface.md, "Arguments outside
    their type"): a bool, a float (even 1.0) or NaN is not one."""
    return isinstance(x, int) and not isinstance(x, bool)


def _guarded(fn):
    """No exception crosses the SPI: one that escapes the argument checks
    below is answered WSAEINVAL, the code for arguments the provider cannot
    use. Applied to the class's SPI methods after the class is made (not as
    a decorator), so a mutation tool sees the methods themselves."""
    import functools

    @functools.wraps(fn)
    def call(self, *args):
        try:
            return fn(self, *args)
        except (TypeError, ValueError, AttributeError, OverflowError, struct.error):
            return Ret(WSAEINVAL, None)

    return call



@attrs.define(eq=False)
class Registration:
    kind: str  # "local" or "rdma"
    sock: int
    addr: int
    length: int
    flags: int
    handle: Any  # local: the handle; rdma: the descriptor bytes
    mr: MemoryRegion
    refs: int = 1
    window: Window | None = None


@attrs.define(eq=False)
class Socket:
    qp: QueuePair
    connected: bool = False
    recv_handle: Any = None


class SimProvider:
    """One host's provider. ``fabric`` joins it to its peer's."""

    name = "sim"
    nic_class = SimNic  # the oracle's mutation check swaps in broken NICs

    def __init__(self, fabric: SimFabric, capabilities: Capabilities | None = None, memory: SimMemory | None = None,
                 ready: bool = True):
        self.capabilities = capabilities or Capabilities()
        self.memory = memory or SimMemory()
        self.nic = self.nic_class(fabric)
        self.ready = ready
        self.startups = 0
        self.sockets: dict[int, Socket] = {}
        self.table: list[Registration] = []
        self._handles = itertools.count(0x1000)

    # --- startup and lookup ---------------------------------------------------

    def startup_ex(self, version: int, wsp_data: bool = True, proc_table: bool = True) -> Ret:
        if not self.ready:
            return Ret(WSASYSNOTREADY, 0)
        if not (wsp_data and proc_table):
            return Ret(WSAEFAULT, 0)
        if not _is_int(version) or not 0 <= version <= 0xFFFF:
            return Ret(WSAVERNOTSUPPORTED, 0)
        major, minor = version & 0xFF, (version >> 8) & 0xFF
        if (major, minor) < LOWEST_VERSION:
            return Ret(WSAVERNOTSUPPORTED, 0)
        if self.startups >= self.capabilities.max_startups:
            return Ret(WSAEPROCLIM, 0)
        self.startups += 1
        agreed = min((major, minor), HIGHEST_VERSION)
        return Ret(OK, agreed[0] | agreed[1] << 8)

    def get_extension_function(self, guid: bytes, out_len: int = POINTER_SIZE) -> Ret:
        if not _is_int(out_len) or out_len < POINTER_SIZE:
            return Ret(WSAEFAULT)
        fn = function_index(guid) if isinstance(guid, bytes) else FN_UNKNOWN
        if fn == FN_UNKNOWN:
            return Ret(WSAEINVAL)
        if (fn == FN_RDMA_READ and not self.capabilities.has_rdma_read) or (
                fn == FN_CACHE_CALLBACK and not self.capabilities.has_cache):
            return Ret(WSAEOPNOTSUPP)
        return Ret(OK, {
            FN_REGISTER_MEMORY: self.register_memory, FN_DEREGISTER_MEMORY: self.deregister_memory,
            FN_REGISTER_RDMA_MEMORY: self.register_rdma_memory,
            FN_DEREGISTER_RDMA_MEMORY: self.deregister_rdma_memory, FN_RDMA_WRITE: self.rdma_write,
            FN_RDMA_READ: self.rdma_read, FN_CACHE_CALLBACK: self.cache_callback,
        }[fn])

    # --- sockets ----------------------------------------------------------------

    def listen(self, s: int) -> bytes:
        sock = self.sockets[s] = Socket(self.nic.create_qp())
        token = struct.pack("<II", self.nic.nid, sock.qp.qpn)
        self.nic.fabric.listeners[token] = (self.nic.nid, sock.qp.qpn)
        return token

    def accept(self, s: int, timeout: float = 30.0) -> Ret:
        """Wait for the peer's connect to reach this listener, as accept does."""
        sock = self.sockets.get(s)
        if sock is None or not sock.qp.peered.wait(timeout):
            return Ret(WSAENOTCONN)
        sock.connected = True
        return Ret(OK)

    def connect(self, s: int, token: bytes) -> Ret:
        dest = self.nic.fabric.listeners.pop(token, None)
        if dest is None:
            return Ret(WSAENOTCONN)
        sock = self.sockets[s] = Socket(self.nic.create_qp(), connected=True)
        sock.qp.peer = dest
        # the connection exchange: the listener learns our QP from the wire
        listener = self.nic.fabric.nics[dest[0]].qps[dest[1]]
        listener.peer = (self.nic.nid, sock.qp.qpn)
        listener.peered.set()
        return Ret(OK)

    def close(self, s: int) -> Ret:
        sock = self.sockets.pop(s, None)
        if sock is None:
            return Ret(WSAENOTCONN)
        # cached and live registrations of the socket go first (CACHE-06)
        for reg in [r for r in self.table if r.sock == s]:
            self._release(reg)
        self.nic.destroy_qp(sock.qp)
        return Ret(OK)

    def shutdown(self) -> None:
        for s in list(self.sockets):
            self.close(s)

    # --- registration -----------------------------------------------------------

    def _socket_up(self, s: int) -> Socket | None:
        sock = self.sockets.get(s) if _is_int(s) else None
        return sock if sock is not None and sock.connected and not sock.qp.error else None

    def _register(self, s: int, buf: int, length: int, flags: int) -> tuple[int, Any]:
        """(status, registration) after the checks every registration makes."""
        sock = self._socket_up(s)
        if sock is None:
            return WSAENOTCONN, None
        if not _is_int(flags) or flags not in (MEM_READ, MEM_WRITE, MEM_READWRITE):
            return WSAEINVAL, None
        if not _is_int(length) or length < 1:
            return WSAEINVAL, None
        segments = self.memory.segments(buf, length) if _is_int(buf) else None
        if segments is None:
            return WSAEFAULT, None
        return OK, (sock, segments)

    def _find(self, kind: str, s: int, buf: int, length: int, flags: int) -> Registration | None:
        for reg in self.table:
            if (reg.kind, reg.sock, reg.addr, reg.length, reg.flags) == (kind, s, buf, length, flags):
                return reg
        return None

    def register_memory(self, s: int, buf: int, length: int, flags: int) -> Ret:
        status, found = self._register(s, buf, length, flags)
        if status:
            return Ret(status, None)
        reg = self._find("local", s, buf, length, flags)
        if reg is not None:  # a live one counts a reference; a cached one comes back with its handle
            reg.refs += 1
            return Ret(OK, reg.handle)
        if len(self.table) >= self.capabilities.slots:
            return Ret(WSAENOBUFS, None)
        _, segments = found
        access = LOCAL_WRITE if flags & MEM_WRITE else 0
        reg = Registration("local", s, buf, length, flags, next(self._handles),
                           MemoryRegion(buf, length, access, segments))
        self.table.append(reg)
        return Ret(OK, reg.handle)

    def register_rdma_memory(self, s: int, buf: int, length: int, flags: int, descriptor_length: int) -> Ret:
        status, found = self._register(s, buf, length, flags)
        if status:
            return Ret(status, RdmaRegistration(None, descriptor_length))
        if not _is_int(descriptor_length) or descriptor_length < DESC_SIZE:
            return Ret(WSAEFAULT, RdmaRegistration(None, DESC_SIZE))
        sock, segments = found
        reg = self._find("rdma", s, buf, length, flags)
        if reg is not None and reg.refs > 0:
            reg.refs += 1
            return Ret(OK, RdmaRegistration(reg.handle, DESC_SIZE))
        if reg is None and len(self.table) >= self.capabilities.slots:
            return Ret(WSAENOBUFS, RdmaRegistration(None, descriptor_length))
        access = (REMOTE_READ if flags & MEM_READ else 0) | (REMOTE_WRITE | LOCAL_WRITE if flags & MEM_WRITE else 0)
        if reg is None:
            reg = Registration("rdma", s, buf, length, flags, None, MemoryRegion(buf, length, access, segments), 0)
            self.table.append(reg)
        # expose it to this connection's peer through a fresh window (CACHE-03)
        reg.window = self.nic.bind_window(reg.mr, sock.qp, access)
        reg.handle = encode_descriptor(buf, length, reg.window.rkey)
        reg.refs = 1
        return Ret(OK, RdmaRegistration(reg.handle, DESC_SIZE))

    def _live(self, kind: str, s: int, handle: Any) -> Registration | None:
        for reg in self.table:
            if reg.kind == kind and reg.sock == s and reg.refs > 0 and type(handle) is type(reg.handle) \
                    and reg.handle == handle:
                return reg
        return None

    def _drop(self, reg: Registration) -> None:
        reg.refs -= 1
        if reg.refs == 0:
            if reg.window is not None:  # the peer loses access at once (RDEREG-02)
                self.nic.invalidate(reg.window)
                reg.window = None
            if not self.capabilities.has_cache:
                self._release(reg)

    def _release(self, reg: Registration) -> None:
        if reg.window is not None:
            self.nic.invalidate(reg.window)
        self.table.remove(reg)

    def deregister_memory(self, s: int, handle: Any) -> Ret:
        reg = self._live("local", s, handle)
        if reg is None:
            return Ret(WSAEINVAL)
        sock = self.sockets.get(s)
        if sock is not None and sock.qp.recv is not None and sock.recv_handle == handle:
            return Ret(WSAEINVAL)  # a posted receive is using it (DEREG-03)
        self._drop(reg)
        return Ret(OK)

    def deregister_rdma_memory(self, s: int, descriptor: bytes) -> Ret:
        reg = self._live("rdma", s, descriptor)
        if reg is None:
            return Ret(WSAEINVAL)
        self._drop(reg)
        return Ret(OK)

    def cache_callback(self, addr: int, size: int) -> Ret:
        if not (_is_int(addr) and _is_int(size)):
            return Ret(WSAEINVAL)

        def overlaps(reg: Registration) -> bool:
            return size > 0 and reg.addr < addr + size and addr < reg.addr + reg.length

        if any(overlaps(r) and r.refs > 0 for r in self.table):
            return Ret(WSAEFAULT)  # a live registration pins the range
        cached = [r for r in self.table if overlaps(r) and r.refs == 0]
        if not cached:
            return Ret(WSAEINVAL)
        for reg in cached:
            self._release(reg)
        return Ret(OK)

    # --- transfers --------------------------------------------------------------

    def _transfer_socket(self, s: int) -> tuple[int, Socket | None]:
        sock = self.sockets.get(s) if _is_int(s) else None
        if sock is None or not sock.connected:
            return WSAENOTCONN, None
        if sock.qp.error:
            return WSAECONNABORTED, None
        return OK, sock

    def _local(self, s: int, buffers: list[WsaBufEx], need: int) -> tuple[int, list]:
        """Check each buffer in order; (status, [(region, addr, length)])."""
        if not isinstance(buffers, (list, tuple)) or not 1 <= len(buffers) <= self.capabilities.max_sge:
            return WSAEINVAL, []
        out = []
        for b in buffers:
            reg = self._live("local", s, b[2]) if isinstance(b, tuple) and len(b) == 3 else None
            if reg is None or not _is_int(b[0]) or b[0] < 1:
                return WSAEINVAL, []
            b = WsaBufEx(*b)
            if not _is_int(b.buf) or b.buf < reg.addr or b.buf + b.len > reg.addr + reg.length:
                return WSAEFAULT, []
            if not reg.flags & need:
                return WSAEINVAL, []
            out.append((reg.mr, b.buf, b.len))
        return OK, out

    def _rdma(self, s: int, buffers: list[WsaBufEx], target: bytes, offset: int, write: bool) -> Ret:
        status, sock = self._transfer_socket(s)
        if status:
            return Ret(status, 0)
        status, local = self._local(s, buffers, MEM_READ if write else MEM_WRITE)
        if status:
            return Ret(status, 0)
        total = sum(n for _, _, n in local)
        parsed = decode_descriptor(target)
        if parsed is None or not _is_int(offset) or offset < 0 or offset + total > parsed[1]:
            return Ret(WSAEINVAL, 0)  # refused before anything is posted (RDMA-08)
        addr, _, rkey = parsed
        # One work request gathers (or scatters) every buffer, so the
        # responder checks the whole range before a byte moves.
        if write:
            payload = b"".join(mr.bytes_at(buf, n) for mr, buf, n in local)
            ok, _ = self.nic.post(sock.qp, OP_WRITE, rkey, addr + offset, payload)
        else:
            ok, data = self.nic.post(sock.qp, OP_READ, rkey, addr + offset, length=total)
            at = 0
            for mr, buf, n in local if ok else ():
                mr.put(buf, data[at:at + n])
                at += n
        return Ret(OK, total) if ok else Ret(WSAECONNRESET, 0)

    def rdma_write(self, s: int, buffers: list[WsaBufEx], target: bytes, offset: int) -> Ret:
        return self._rdma(s, buffers, target, offset, write=True)

    def rdma_read(self, s: int, buffers: list[WsaBufEx], target: bytes, offset: int) -> Ret:
        return self._rdma(s, buffers, target, offset, write=False)

    def send(self, s: int, buffers: list[WsaBufEx]) -> Ret:
        status, sock = self._transfer_socket(s)
        if status:
            return Ret(status, 0)
        status, local = self._local(s, buffers, MEM_READ)
        if status:
            return Ret(status, 0)
        payload = b"".join(mr.bytes_at(buf, n) for mr, buf, n in local)
        ok, _ = self.nic.post(sock.qp, OP_SEND, 0, 0, payload)
        return Ret(OK, len(payload)) if ok else Ret(WSAECONNRESET, 0)

    def recv(self, s: int, buffer: WsaBufEx) -> Ret:
        status, sock = self._transfer_socket(s)
        if status:
            return Ret(status)
        if not isinstance(buffer, tuple):  # one WSABUFEX, never a list of them (XFER-01)
            return Ret(WSAEINVAL)
        status, local = self._local(s, [buffer], MEM_WRITE)
        if status:
            return Ret(status)
        sock.qp.recv, sock.recv_handle = local[0], buffer.handle
        return Ret(WSA_IO_PENDING)

    def recv_done(self, s: int) -> Ret:
        sock = self.sockets.get(s)
        if sock is None or sock.qp.recv_done is None:
            return Ret(WSAEINVAL, 0)
        (status, nbytes), sock.qp.recv_done = sock.qp.recv_done, None
        sock.recv_handle = None
        return Ret(status, nbytes)


def sim_pair(capabilities: Capabilities | None = None, pages: int = 8, page_size: int = 4096,
             ready: bool = True, cls: type[SimProvider] = SimProvider) -> tuple[SimProvider, SimProvider]:
    """Two hosts' providers on one fabric."""
    fabric = SimFabric()
    return tuple(cls(fabric, capabilities, SimMemory(pages, page_size, base=0x7F3A_0000_0000 + h * 2**32), ready)
                 for h in (0, 1))


#: The SPI entry points: no exception crosses them (``_guarded``).
for _name in ("startup_ex", "get_extension_function", "close", "register_memory", "register_rdma_memory",
              "deregister_memory", "deregister_rdma_memory", "cache_callback", "rdma_write", "rdma_read", "send",
              "recv", "recv_done"):
    setattr(SimProvider, _name, _guarded(getattr(SimProvider, _name)))
