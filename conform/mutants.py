"""Seeded-bug variants of the software provider: the oracle's own check.

Each mutant breaks one clause the way real providers and caches do. The
lockstep campaign must find a divergence for every one of them
(``sanspi conform --mutants``); a survivor means the oracle has a blind spot.
"""

from __future__ import annotations

from typing import Callable

import attrs

from sanspi.impl import sim
from sanspi.impl.interface import Capabilities, Ret
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
)

BY_NAME = {m.name: m for m in MUTANTS}


def hunt(mutant, pages: int = 4, steps: int = 40, seeds=MUTANT_SEEDS, progress=None, *,
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
