"""Seeded-bug variants of the software provider: the oracle's own check.

Each mutant breaks one clause the way real providers and caches do. The
lockstep campaign must find a divergence for every one of them
(``sanspi conform --mutants``); a survivor means the oracle has a blind spot.
"""

from __future__ import annotations

import itertools
from typing import Callable

import attrs

from sanspi.impl import sim
from sanspi.impl.interface import Capabilities, RdmaRegistration, Ret
from sanspi.impl.sim import (
    ACK, OK, REMOTE_READ, REMOTE_WRITE, Registration, SimNic, SimProvider, sim_pair,
)
from sanspi.spi import WSAEFAULT, WSAEINVAL


#: The campaign's budget for one mutant, per seed: a kill usually takes tens
#: of examples; only a survivor spends all of it, under every seed.
MUTANT_EXAMPLES = 1000
MUTANT_SEEDS = (0, 1, 2)


@attrs.frozen
class Mutant:
    name: str
    clause: str
    what: str
    cls: type[SimProvider]

    def pair(self, capabilities: Capabilities, pages: int, page_size: int):
        return sim_pair(capabilities, pages, page_size, cls=self.cls)


def provider(nic: type[SimNic] | None = None, **methods: Callable) -> type[SimProvider]:
    """A SimProvider subclass with some methods (and maybe its NIC) replaced."""
    attrs_ = dict(methods)
    if nic is not None:
        attrs_["nic_class"] = nic
    return type("MutantProvider", (SimProvider,), attrs_)


# --- NIC bugs -------------------------------------------------------------------


class NoRemoteAccessCheck(SimNic):
    """The responder honours any window of the QP, whatever its access bits."""

    def respond(self, qpn, packet):
        for w in self.windows.values():
            w.access |= REMOTE_READ | REMOTE_WRITE
        return super().respond(qpn, packet)


class AnyQueuePair(SimNic):
    """A window answers on every QP of the NIC (a PD-wide rkey)."""

    def respond(self, qpn, packet):
        qp = self.qps.get(qpn)
        for w in self.windows.values():
            if qp is not None:
                w.qp = qp
        return super().respond(qpn, packet)


class RequesterKeepsGoing(SimNic):
    """A failed request does not put the requester's QP in the error state."""

    def post(self, qp, opcode, rkey, addr, payload=b"", length=0):
        was = qp.error
        ok, data = super().post(qp, opcode, rkey, addr, payload, length)
        if not ok and not was:
            qp.error = False
        return ok, data


class TruncatingReceive(SimNic):
    """A send larger than the posted receive is cut to fit, not refused."""

    def _receive(self, qp, payload):
        if qp.recv is not None and len(payload) > qp.recv[2]:
            payload = payload[: qp.recv[2]]
        return super()._receive(qp, payload)


class OneByteMore(SimNic):
    """An RDMA write lands one byte beyond the requested range when it can."""

    def respond(self, qpn, packet):
        reply = super().respond(qpn, packet)
        if reply[:1] == bytes([ACK]) and packet[0] == sim.OP_WRITE:
            import struct

            _, rkey, addr, length = struct.unpack_from("<BIQI", packet)
            w = self.windows.get(rkey)
            if w is not None:
                w.mr.put(addr + length, b"\xee")
        return reply


class WritesNothing(SimNic):
    """An RDMA write is acknowledged but its bytes are dropped (a NIC, or a
    provider, that answers 0 and moves nothing)."""

    def respond(self, qpn, packet):
        import struct

        _, rkey, addr, length = struct.unpack_from("<BIQI", packet)
        w = self.windows.get(rkey) if packet[0] == sim.OP_WRITE else None
        before = w.mr.bytes_at(addr, length) if w is not None else None
        reply = super().respond(qpn, packet)
        if before is not None:
            w.mr.put(addr, before)
        return reply


class ContiguousFrames(sim.MemoryRegion):
    """A region that assumes its pages are contiguous: bytes past the first
    page are taken from (and put into) the first page's frame."""

    def bytes_at(self, addr, length):
        if addr < self.addr or addr + length > self.addr + self.length:
            return None
        frame, off, _ = self.segments[0]
        start = off + addr - self.addr
        return bytes((frame[start:] + bytes(length))[:length])

    def put(self, addr, data):
        if addr < self.addr or addr + len(data) > self.addr + self.length:
            return False
        frame, off, _ = self.segments[0]
        start = off + addr - self.addr
        n = min(len(data), len(frame) - start)
        frame[start:start + n] = data[:n]
        return True


# --- provider bugs ------------------------------------------------------------------


def _drop_keeps_window(self: SimProvider, reg: Registration) -> None:
    reg.refs -= 1
    if reg.refs == 0 and not self.capabilities.has_cache:
        self._release(reg)


def _callback_lies(self: SimProvider, addr: int, size: int) -> Ret:
    cached = [r for r in self.table if r.refs == 0 and size > 0 and r.addr < addr + size and addr < r.addr + r.length]
    return Ret(OK) if cached else SimProvider.cache_callback(self, addr, size)


def _callback_inside_only(self: SimProvider, addr: int, size: int) -> Ret:
    if any(r.refs > 0 and size > 0 and r.addr < addr + size and addr < r.addr + r.length for r in self.table):
        return Ret(WSAEFAULT)
    hit = [r for r in self.table if r.refs == 0 and addr <= r.addr and r.addr + r.length <= addr + size]
    partial = [r for r in self.table if r.refs == 0 and size > 0 and r.addr < addr + size and addr < r.addr + r.length]
    for r in hit:
        self._release(r)
    return Ret(OK) if partial else Ret(WSAEINVAL)


def _callback_ignores_live(self: SimProvider, addr: int, size: int) -> Ret:
    cached = [r for r in self.table if r.refs == 0 and size > 0 and r.addr < addr + size and addr < r.addr + r.length]
    for r in cached:
        self._release(r)
    return Ret(OK) if cached else Ret(WSAEINVAL)


def _close_keeps_cache(self: SimProvider, s: int) -> Ret:
    sock = self.sockets.pop(s, None)
    if sock is None:
        return SimProvider.close(self, s)
    for reg in [r for r in self.table if r.sock == s and r.refs > 0]:
        self._release(reg)
    self.nic.destroy_qp(sock.qp)
    return Ret(OK)


def _register_bad_flags_efault(self, s, buf, length, flags):
    if flags not in (1, 2, 3) and self._socket_up(s) is not None:
        return Ret(WSAEFAULT, None)
    return SimProvider.register_memory(self, s, buf, length, flags)


def _dereg_releases_all(self, s, handle):
    ret = SimProvider.deregister_memory(self, s, handle)
    reg = next((r for r in self.table if r.kind == "local" and r.sock == s and r.handle == handle), None)
    if ret.status == OK and reg is not None and reg.refs > 0:
        reg.refs = 0
    return ret


def _ignore_local_access(self, s, buffers, need):
    return SimProvider._local(self, s, buffers, 3)


def _local_bound_off_by_one(self, s, buffers, need):
    if not 1 <= len(buffers) <= self.capabilities.max_sge:
        return WSAEINVAL, []
    out = []
    for b in buffers:
        reg = self._live("local", s, b.handle)
        if reg is None or b.len < 1:
            return WSAEINVAL, []
        if b.buf < reg.addr or b.buf + b.len > reg.addr + reg.length + 1:  # the slip
            return WSAEFAULT, []
        if not reg.flags & need:
            return WSAEINVAL, []
        out.append((reg.mr, b.buf, min(b.len, reg.addr + reg.length - b.buf)))
    return OK, out


def _capacity_counts_live_only(self, s, buf, length, flags):
    live = sum(1 for r in self.table if r.refs > 0)
    saved = self.capabilities
    try:
        self.capabilities = attrs.evolve(saved, slots=saved.slots + (len(self.table) - live))
        return SimProvider.register_memory(self, s, buf, length, flags)
    finally:
        self.capabilities = saved


def _dereg_ignores_receive(self, s, handle):
    sock = self.sockets.get(s)
    saved = sock.recv_handle if sock else None
    if sock:
        sock.recv_handle = object()
    try:
        return SimProvider.deregister_memory(self, s, handle)
    finally:
        if sock:
            sock.recv_handle = saved


def _version_unclamped(self, version, wsp_data=True, proc_table=True):
    ret = SimProvider.startup_ex(self, version, wsp_data, proc_table)
    return Ret(ret.status, version & 0xFFFF) if ret.status == OK else ret


def _gather_reversed(self, s, buffers, target, offset):
    """A write gathers its buffers last to first."""
    if isinstance(buffers, list) and len(buffers) > 1:
        buffers = buffers[::-1]
    return SimProvider.rdma_write(self, s, buffers, target, offset)


def _offset_truncated(self, s, buffers, target, offset, write=True):
    """The offset is stored in 32 bits before use (a DWORD cast of a wider
    value): 2**32 + k becomes k."""
    return SimProvider._rdma(self, s, buffers, target, offset & 0xFFFFFFFF if isinstance(offset, int) else offset,
                             write)


def _signed_length(self, s, buf, length, flags):
    """The length is kept in a signed 32-bit int: 2**31 and above read as
    negative, refused as a bad length rather than as a bad range."""
    if isinstance(length, int) and length >= 2**31 and self._socket_up(s) is not None and flags in (1, 2, 3):
        return Ret(WSAEINVAL, None)
    return SimProvider.register_memory(self, s, buf, length, flags)


def _cache_hit_new_handle(self, s, buf, length, flags):
    """A local cache hit hands out a new handle (CACHE-02 keeps it)."""
    reg = self._find("local", s, buf, length, flags) if self._socket_up(s) is not None else None
    ret = SimProvider.register_memory(self, s, buf, length, flags)
    if reg is not None and ret.status == OK and reg.refs == 1:
        reg.handle = next(self._handles)
        return Ret(OK, reg.handle)
    return ret


def _reexposed_same_descriptor(self, s, buf, length, flags, descriptor_length):
    """Re-exposing a cached RDMA buffer hands back its old descriptor bytes
    (the window re-bound under the old key)."""
    reg = self._find("rdma", s, buf, length, flags) if self._socket_up(s) is not None else None
    old = reg.handle if reg is not None and reg.refs == 0 else None
    ret = SimProvider.register_rdma_memory(self, s, buf, length, flags, descriptor_length)
    if old is not None and ret.status == OK:
        w = reg.window
        self.nic.windows.pop(w.rkey, None)
        w.rkey = sim.decode_descriptor(old)[2]
        self.nic.windows[w.rkey] = w
        reg.handle = old
        return Ret(OK, RdmaRegistration(old, sim.DESC_SIZE))
    return ret


class _SmallestFree:
    """Handles as the smallest value no registration in the table holds."""

    def __init__(self, provider: SimProvider):
        self.provider = provider

    def __next__(self):
        taken = {r.handle for r in self.provider.table if r.kind == "local"}
        return next(h for h in itertools.count(0x1000) if h not in taken)


class HandlesReused(SimProvider):
    """A released handle value is issued again (REG-07 forbids it)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._handles = _SmallestFree(self)


def _versions_by_major(self, version, wsp_data=True, proc_table=True):
    """Startup compares only the major version: 2.0 and 2.1 are accepted."""
    if isinstance(version, int) and version & 0xFF == 2 and (version >> 8) < 2:
        version = 0x0202
    return SimProvider.startup_ex(self, version, wsp_data, proc_table)


def _count_unchecked(self, s, buffers, need):
    """Up to one buffer more than max_sge is accepted."""
    saved = self.capabilities
    try:
        self.capabilities = attrs.evolve(saved, max_sge=saved.max_sge + 1)
        return SimProvider._local(self, s, buffers, need)
    finally:
        self.capabilities = saved


def _read_counts_nothing(self, s, buffers, target, offset):
    """A read moves the bytes but reports no byte count (None)."""
    ret = SimProvider.rdma_read(self, s, buffers, target, offset)
    return Ret(ret.status, None) if ret.status == OK else ret


def _descriptor_padding_unchecked(raw):
    """Only the fields and their check are read: the padding after them, and
    any bytes past 32, may be anything."""
    if not isinstance(raw, (bytes, bytearray)) or len(raw) < sim.DESC_SIZE:
        return None
    raw = bytes(raw[:sim.DESC.size + 4]) + bytes(sim.DESC_SIZE - sim.DESC.size - 4)
    return _decode(raw)


_decode = sim.decode_descriptor


class PaddingBlindProvider(SimProvider):
    def _rdma(self, s, buffers, target, offset, write):
        saved = sim.decode_descriptor
        sim.decode_descriptor = _descriptor_padding_unchecked
        try:
            return SimProvider._rdma(self, s, buffers, target, offset, write)
        finally:
            sim.decode_descriptor = saved


class ContiguousProvider(SimProvider):
    def register_memory(self, s, buf, length, flags):
        ret = SimProvider.register_memory(self, s, buf, length, flags)
        for reg in self.table:
            if reg.kind == "local" and type(reg.mr) is sim.MemoryRegion:
                mr = reg.mr
                reg.mr = ContiguousFrames(mr.addr, mr.length, mr.access, mr.segments)
        return ret


def _read_ignores_offset(self, s, buffers, target, offset):
    return SimProvider.rdma_read(self, s, buffers, target, 0)


def _any_socket(self, kind, s, handle):
    for reg in self.table:
        if reg.kind == kind and reg.refs > 0 and reg.handle == handle:
            return reg
    return None


def _stale_cache_by_address(self, kind, s, buf, length, flags):
    """The cache is keyed by address alone: a hit ignores length and flags."""
    for reg in self.table:
        if (reg.kind, reg.sock, reg.addr) == (kind, s, buf) and reg.refs == 0:
            return reg
    return SimProvider._find(self, kind, s, buf, length, flags)


MUTANTS: tuple[Mutant, ...] = (
    Mutant("no-remote-permission-check", "ACC-02", "the NIC ignores a window's access bits",
           provider(NoRemoteAccessCheck)),
    Mutant("descriptor-on-any-connection", "RREG-02", "a window answers on every QP (PD-wide rkey)",
           provider(AnyQueuePair)),
    Mutant("descriptor-alive-after-dereg", "RDEREG-02", "deregistration leaves the window bound",
           provider(_drop=_drop_keeps_window)),
    Mutant("error-state-not-entered", "CONN-01", "a remote failure leaves the requester's QP usable",
           provider(RequesterKeepsGoing)),
    Mutant("oversize-send-truncated", "XFER-03", "a send larger than the receive is truncated",
           provider(TruncatingReceive)),
    Mutant("write-one-byte-too-many", "RDMA-06", "an RDMA write stores one extra byte", provider(OneByteMore)),
    Mutant("callback-keeps-cache", "CACHE-04", "the callback answers 0 but releases nothing: stale hit after "
           "free and re-allocation", provider(cache_callback=_callback_lies)),
    Mutant("callback-inside-only", "CACHE-04", "the callback releases only entries wholly inside the range",
           provider(cache_callback=_callback_inside_only)),
    Mutant("callback-ignores-live", "CACHE-05", "the callback answers 0 where a live registration pins the range",
           provider(cache_callback=_callback_ignores_live)),
    Mutant("close-keeps-cache", "CACHE-06", "closing keeps cached registrations",
           provider(close=_close_keeps_cache)),
    Mutant("bad-flags-wrong-code", "REG-02", "bad flags answer WSAEFAULT, not WSAEINVAL",
           provider(register_memory=_register_bad_flags_efault)),
    Mutant("dereg-drops-every-reference", "DEREG-02", "one deregistration drops every reference",
           provider(deregister_memory=_dereg_releases_all)),
    Mutant("no-local-access-check", "ACC-03", "local buffers are used whatever their flags",
           provider(_local=_ignore_local_access)),
    Mutant("local-bound-off-by-one", "RDMA-04", "a local buffer may run one byte past its registration",
           provider(_local=_local_bound_off_by_one)),
    Mutant("cached-entries-not-counted", "REG-09", "cached registrations do not count against the table",
           provider(register_memory=_capacity_counts_live_only)),
    Mutant("dereg-while-receive-posted", "DEREG-03", "memory under a posted receive can be deregistered",
           provider(deregister_memory=_dereg_ignores_receive)),
    Mutant("version-not-negotiated", "START-01", "startup echoes the requested version",
           provider(startup_ex=_version_unclamped)),
    Mutant("read-ignores-offset", "RDMA-07", "an RDMA read reads from the start of the target",
           provider(rdma_read=_read_ignores_offset)),
    Mutant("handle-on-any-socket", "REG-06", "a handle is accepted on every socket", provider(_live=_any_socket)),
    Mutant("cache-keyed-by-address", "CACHE-02", "a cache hit ignores length and flags",
           provider(_find=_stale_cache_by_address)),
    Mutant("write-moves-nothing", "RDMA-06", "an RDMA write answers 0 with the byte count but moves nothing",
           provider(WritesNothing)),
    Mutant("gather-reversed", "RDMA-06", "a write of several buffers gathers them last to first",
           provider(rdma_write=_gather_reversed)),
    Mutant("offset-truncated-to-32-bits", "RDMA-05", "the target offset is cut to 32 bits: 2**32 + k reaches k",
           provider(_rdma=_offset_truncated)),
    Mutant("length-signed-32", "REG-04", "a length of 2**31 or more is read as negative: WSAEINVAL for WSAEFAULT",
           provider(register_memory=_signed_length)),
    Mutant("pages-assumed-contiguous", "RDMA-06", "a local buffer crossing a page is gathered from the first page",
           ContiguousProvider),
    Mutant("cache-hit-new-handle", "CACHE-02", "a local cache hit hands out a new handle",
           provider(register_memory=_cache_hit_new_handle)),
    Mutant("reexposed-with-old-descriptor", "CACHE-03", "re-exposing a cached RDMA buffer reuses its old descriptor",
           provider(register_rdma_memory=_reexposed_same_descriptor)),
    Mutant("handles-reused", "REG-07", "a released handle value is issued again", HandlesReused),
    Mutant("minor-version-ignored", "START-05", "startup accepts 2.0 and 2.1 (only the major is compared)",
           provider(startup_ex=_versions_by_major)),
    Mutant("buffer-count-unchecked", "RDMA-03", "one buffer more than max_sge is accepted",
           provider(_local=_count_unchecked)),
    Mutant("read-reports-no-count", "RDMA-07", "a read moves the bytes but hands back None for the byte count",
           provider(rdma_read=_read_counts_nothing)),
    Mutant("descriptor-padding-unchecked", "RREG-02", "bytes after the descriptor's check field are ignored: a "
           "descriptor forged there, or made longer, still works", PaddingBlindProvider),
)

BY_NAME = {m.name: m for m in MUTANTS}


def hunt(mutant, pages: int = 8, steps: int = 40, seeds=MUTANT_SEEDS, progress=None, *,
         examples: int = MUTANT_EXAMPLES, capabilities: Capabilities | None = None,
         factory: Callable[[], tuple] | None = None):
    """Run the campaign on ``mutant`` under each seed until it is killed.

    Several seeds, because Hypothesis's generation also draws on constants
    it finds in the modules loaded so far, so one seed does not fix a run;
    a real blind spot survives them all. Returns the last CampaignResult.

    By default the providers are the mutant's software pair on the campaign's
    capabilities; another provider family (the verbs mutants) passes the
    ``factory`` making its pair, the ``capabilities`` the model is to assume
    and its own ``examples`` budget. ``mutant`` needs only a ``name``.
    """
    from sanspi.conform.campaign import model_config, run_campaign
    from sanspi.conform.providers import SIM_CAPABILITIES

    caps = capabilities if capabilities is not None else SIM_CAPABILITIES
    make = factory if factory is not None else (lambda: mutant.pair(caps, pages, 4096))
    cfg = model_config(caps, pages=pages)
    result = None
    for seed in seeds:
        result = run_campaign(make, cfg, examples, steps, seed, use_database=False, shrink=False,
                              progress=progress, name=mutant.name)
        if not result.ok:
            break
    return result
