"""Every transition of the model, each written once over ``ops``.

A transition is ``fn(cfg, state, args, ops) -> Step``: ``enabled`` says
whether the step may be taken at all (a precondition on the *environment*:
the switch never calls into a provider it has not started, a receive must be
posted before a send can complete, ...), ``status`` is exactly what the SPI
returns (0, WSA_IO_PENDING or a WSA error code), ``result`` the value it
hands back (handle, descriptor id, byte count, version word, needed
descriptor size), ``next`` the state after it.

Error paths are *not* preconditions: a bad handle, a wrong socket or a
forged descriptor is an enabled step whose status is the error, so the model
predicts failures as well as successes (spec/README.md, "SPI calls and environment events").

Where the SPI leaves an outcome open, the transition takes a ``choice``
argument; ``Transition.choices`` says how many there are and the guard admits
only the choices that are allowed in that state (RDMA-08).

The clauses each function implements are named in its docstring and in the
``TRANSITIONS`` table; spec/index.toml holds their text.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs

from sanspi.model.constants import (
    AT_CALL,
    CLOSED,
    CONNECTED,
    ERRORED,
    FN_CACHE_CALLBACK,
    FN_RDMA_READ,
    FN_REGISTER_MEMORY,
    KIND_LOCAL,
    KIND_RDMA,
    MEM_READ,
    MEM_READWRITE,
    MEM_WRITE,
    OK,
    POINTER_SIZE,
    RECV_DONE,
    RECV_IDLE,
    RECV_POSTED,
    REFUSED_BY_PEER,
    WSA_IO_PENDING,
    WSA_OPERATION_ABORTED,
    WSAECONNABORTED,
    WSAECONNRESET,
    WSAEFAULT,
    WSAEINVAL,
    WSAENOBUFS,
    WSAENOTCONN,
    WSAEOPNOTSUPP,
    WSAEPROCLIM,
    WSASYSNOTREADY,
    WSAVERNOTSUPPORTED,
    FN_UNKNOWN,
)
from sanspi.model import reasons as R
from sanspi.model.ops import Ops, decide
from sanspi.model.state import Config, Endpoint, Host, Slot, State, closed_endpoint, empty_slot


@attrs.frozen
class Step:
    enabled: Any
    status: Any
    result: Any
    next: State
    why: Any = R.NONE  # the reason code of the outcome (model/reasons.py)


# --- arguments ---------------------------------------------------------------


@attrs.frozen
class StartupArgs:
    host: Any
    major: Any
    minor: Any
    data_ok: Any = True  # lpWSPData points at writable memory
    table_ok: Any = True  # lpProcTable points at writable memory


@attrs.frozen
class LookupArgs:
    host: Any
    fn: Any  # the model's index of the GUID asked for (FN_*, FN_UNKNOWN)
    outlen: Any = POINTER_SIZE  # bytes of the output buffer


@attrs.frozen
class ConnArgs:
    conn: Any


@attrs.frozen
class PagesArgs:
    host: Any
    page: Any
    npages: Any


@attrs.frozen
class FillArgs:
    host: Any
    addr: Any
    length: Any
    seed: Any


@attrs.frozen
class RegisterArgs:
    host: Any
    sock: Any
    addr: Any
    length: Any
    flags: Any


@attrs.frozen
class RegisterRdmaArgs:
    host: Any
    sock: Any
    addr: Any
    length: Any
    flags: Any
    desc_len: Any  # *lpdwDescriptorLength on entry


@attrs.frozen
class DeregisterArgs:
    host: Any
    sock: Any
    rid: Any  # a handle (local) or a descriptor's id (RDMA); 0 = garbage


@attrs.frozen
class CallbackArgs:
    host: Any
    addr: Any
    size: Any


@attrs.frozen
class Sge:
    """One WSABUFEX: a buffer and the handle it was registered under, in the
    SPI's order (``len``, ``buf``, ``handle``; impl/interface.py's WsaBufEx).
    Build it with keywords."""

    length: Any
    addr: Any
    handle: Any


@attrs.frozen
class RdmaArgs:
    host: Any
    sock: Any
    sges: tuple  # of Sge; its length is the call's dwBufferCount
    desc: Any  # the target descriptor's id; 0 = garbage or forged
    offset: Any
    choice: Any = AT_CALL  # which outcome RDMA-08 leaves open: AT_CALL or REFUSED_BY_PEER


@attrs.frozen
class SendArgs:
    host: Any
    sock: Any
    sges: tuple


@attrs.frozen
class RecvArgs:
    host: Any
    sock: Any
    handle: Any
    addr: Any
    length: Any


@attrs.frozen
class EndpointArgs:
    host: Any
    sock: Any


# --- helpers over ops --------------------------------------------------------


def valid_host(ops: Ops, h: Any) -> Any:
    return ops.or_(h == 0, h == 1)


def get_host(ops: Ops, s: State, h: Any) -> Host:
    return ops.select(s.hosts, h, s.hosts[0])


def put_host(ops: Ops, s: State, h: Any, host: Host) -> State:
    return attrs.evolve(s, hosts=ops.update(s.hosts, h, host))


def get_ep(ops: Ops, host: Host, sock: Any) -> Endpoint:
    return ops.select(host.eps, sock, closed_endpoint())


def put_ep(ops: Ops, host: Host, sock: Any, ep: Endpoint) -> Host:
    return attrs.evolve(host, eps=ops.update(host.eps, sock, ep))


def overlaps(ops: Ops, a1: Any, l1: Any, a2: Any, l2: Any) -> Any:
    """Do [a1, a1+l1) and [a2, a2+l2) share a byte? Empty ranges share none."""
    return ops.and_(l1 > 0, l2 > 0, a1 < a2 + l2, a2 < a1 + l1)


def contains(ops: Ops, outer_addr: Any, outer_len: Any, addr: Any, length: Any) -> Any:
    return ops.and_(outer_addr <= addr, addr + length <= outer_addr + outer_len)


def valid_flags(ops: Ops, flags: Any) -> Any:
    """ACC-01: MEM_READ, MEM_WRITE or MEM_READWRITE, nothing else."""
    return ops.or_(flags == MEM_READ, flags == MEM_WRITE, flags == MEM_READWRITE)


def grants(ops: Ops, flags: Any, need: int) -> Any:
    """ACC-02: does a registration with ``flags`` allow the use ``need``?"""
    return ops.or_(flags == need, flags == MEM_READWRITE)


def range_mapped(ops: Ops, cfg: Config, host: Host, addr: Any, length: Any) -> Any:
    """MEM-02: [addr, addr+length) lies wholly in mapped pages."""
    def page_ok(p: Any, mapped: Any) -> Any:
        return ops.implies(overlaps(ops, addr, length, p * cfg.page_size, cfg.page_size), mapped)

    return ops.and_(addr >= 0, addr + length <= cfg.memsize, ops.forall_at(host.mapped, page_ok))


def live(ops: Ops, sl: Slot) -> Any:
    return ops.and_(sl.used, sl.refs > 0)


def cached(ops: Ops, sl: Slot) -> Any:
    return ops.and_(sl.used, sl.refs == 0)


def within(ops: Ops, offset: Any, n: Any, length: Any) -> Any:
    """RDMA-05: [offset, offset+n) lies inside a registration of ``length``."""
    return ops.and_(offset >= 0, offset + n <= length)


def keeps_id_on_cache_hit(kind: int) -> bool:
    """CACHE-02, CACHE-03: a cache hit keeps a local handle but never a
    descriptor, so a revoked descriptor cannot come back to life."""
    return kind == KIND_LOCAL


def callback_hits(ops: Ops, sl: Slot, addr: Any, size: Any) -> Any:
    """CACHE-04: the callback concerns every registration sharing a byte with
    the range, not only those inside it (a partial overlap is a whole entry)."""
    return overlaps(ops, sl.addr, sl.length, addr, size)


def released_at_close(ops: Ops, sl: Slot, conn: Any) -> Any:
    """SOCK-02, CACHE-06: closing drops the socket's registrations, live and cached."""
    return ops.and_(sl.used, sl.sock == conn)


def live_registration(ops: Ops, sl: Slot, kind: int, sock: Any, rid: Any) -> Any:
    """REG-05, RREG-06: the live registration ``rid`` of ``kind`` on ``sock``."""
    return ops.and_(live(ops, sl), sl.kind == kind, sl.sock == sock, sl.rid == rid)


def connection_checks(ops: Ops, ep: Endpoint) -> list:
    """CONN-02: what a data transfer call gets from the endpoint's state."""
    return [(ep.conn == CLOSED, WSAENOTCONN, R.NOT_CONNECTED), (ep.conn == ERRORED, WSAECONNABORTED, R.CONNECTION_FAILED)]


def endpoint_status(ops: Ops, ep: Endpoint) -> Any:
    """CONN-02: the status alone, for a check of the connection's state."""
    return decide(ops, connection_checks(ops, ep), OK, R.NONE)[0]


def sge_checks(ops: Ops, cfg: Config, host: Host, sock: Any, sges: tuple, need: int) -> list:
    """RDMA-03, RDMA-04, ACC-03: the checks of a transfer's local buffers, in order."""
    if not 1 <= len(sges) <= cfg.max_sge:  # the count is the call's shape, never symbolic
        return [(True, WSAEINVAL, R.BUFFER_COUNT)]
    cases = []
    for sge in sges:
        found, idx = ops.find(host.slots, lambda sl: live_registration(ops, sl, KIND_LOCAL, sock, sge.handle))
        reg = ops.select(host.slots, idx, empty_slot())
        cases += [
            (ops.not_(found), WSAEINVAL, R.BUFFER_HANDLE),
            (sge.length < 1, WSAEINVAL, R.BUFFER_EMPTY),
            (ops.not_(contains(ops, reg.addr, reg.length, sge.addr, sge.length)), WSAEFAULT, R.BUFFER_OUTSIDE),
            (ops.not_(grants(ops, reg.flags, need)), WSAEINVAL, R.BUFFER_ACCESS),
        ]
    return cases


def fits_receive(ops: Ops, ep: Endpoint, n: Any) -> Any:
    """XFER-03: a message of ``n`` bytes fits the receive posted at ``ep``."""
    return n <= ep.recv_len


def total_length(sges: tuple) -> Any:
    total = 0
    for sge in sges:
        total = total + sge.length
    return total


def fail_connection(ops: Ops, s: State, sock: Any) -> State:
    """CONN-01: both ends enter the error state; posted receives are flushed."""
    for h in (0, 1):
        host = s.hosts[h]
        ep = get_ep(ops, host, sock)
        posted = ep.recv == RECV_POSTED
        ep = attrs.evolve(
            ep,
            conn=ERRORED,
            recv=ops.ite(posted, RECV_DONE, ep.recv),
            recv_status=ops.ite(posted, WSA_OPERATION_ABORTED, ep.recv_status),
            recv_bytes=ops.ite(posted, 0, ep.recv_bytes),
            recv_handle=ops.ite(posted, 0, ep.recv_handle),
            recv_addr=ops.ite(posted, 0, ep.recv_addr),
            recv_len=ops.ite(posted, 0, ep.recv_len),
        )
        s = put_host(ops, s, h, put_ep(ops, host, sock, ep))
    return s


# --- startup and extension lookup --------------------------------------------


def startup_ex(cfg: Config, s: State, a: StartupArgs, ops: Ops) -> Step:
    """WSPStartupEx: START-01..06 (no path returns WSAEINPROGRESS)."""
    host = get_host(ops, s, a.host)
    lo, hi = cfg.lowest_version, cfg.highest_version
    below = ops.or_(a.major < lo[0], ops.and_(a.major == lo[0], a.minor < lo[1]))
    above = ops.or_(a.major > hi[0], ops.and_(a.major == hi[0], a.minor > hi[1]))
    status, why = decide(
        ops,
        [
            (ops.not_(cfg.ready), WSASYSNOTREADY, R.NOT_READY),
            (ops.not_(ops.and_(a.data_ok, a.table_ok)), WSAEFAULT, R.BAD_POINTER),
            (below, WSAVERNOTSUPPORTED, R.VERSION_LOW),
            (host.startups >= cfg.max_startups, WSAEPROCLIM, R.TOO_MANY_STARTUPS),
        ],
        OK, ops.ite(above, R.STARTED_CAPPED, R.STARTED),
    )
    ok = status == OK
    word = ops.ite(above, hi[0] + 256 * hi[1], a.major + 256 * a.minor)
    started = put_host(ops, s, a.host, attrs.evolve(host, startups=host.startups + 1))
    enabled = ops.and_(
        valid_host(ops, a.host), a.major >= 0, a.major <= 255, a.minor >= 0, a.minor <= 255
    )
    return Step(enabled, status, ops.ite(ok, word, 0), ops.ite(ok, started, s), why)


def get_extension(cfg: Config, s: State, a: LookupArgs, ops: Ops) -> Step:
    """WSPIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER): EXT-01..04."""
    host = get_host(ops, s, a.host)
    unsupported = ops.or_(
        ops.and_(a.fn == FN_RDMA_READ, ops.not_(cfg.has_rdma_read)),
        ops.and_(a.fn == FN_CACHE_CALLBACK, ops.not_(cfg.has_cache)),
    )
    status, why = decide(
        ops,
        [
            (a.outlen < POINTER_SIZE, WSAEFAULT, R.OUT_TOO_SMALL),
            (ops.or_(a.fn < FN_REGISTER_MEMORY, a.fn >= FN_UNKNOWN), WSAEINVAL, R.UNKNOWN_GUID),
            (unsupported, WSAEOPNOTSUPP, R.UNSUPPORTED),
        ],
        OK, R.FOUND,
    )
    enabled = ops.and_(valid_host(ops, a.host), host.startups > 0)
    return Step(enabled, status, ops.ite(status == OK, a.fn, 0), s, why)


# --- connections (environment: the switch connects and closes sockets) -------


def connect(cfg: Config, s: State, a: ConnArgs, ops: Ops) -> Step:
    """SOCK-01: a connection joins endpoint ``conn`` of host 0 and of host 1."""
    closed = [get_ep(ops, s.hosts[h], a.conn).conn == CLOSED for h in (0, 1)]
    started = [s.hosts[h].startups > 0 for h in (0, 1)]
    enabled = ops.and_(a.conn >= 0, a.conn < cfg.sockets, *closed, *started)
    nxt = s
    for h in (0, 1):
        nxt = put_host(ops, nxt, h, put_ep(ops, nxt.hosts[h], a.conn, Endpoint(conn=CONNECTED)))
    return Step(enabled, OK, 0, nxt)


def close(cfg: Config, s: State, a: ConnArgs, ops: Ops) -> Step:
    """SOCK-02, CACHE-06: closing releases every registration of the socket,
    cached ones included, on both hosts, and drops posted receives."""
    enabled = ops.and_(
        a.conn >= 0, a.conn < cfg.sockets, get_ep(ops, s.hosts[0], a.conn).conn != CLOSED
    )
    nxt = s
    for h in (0, 1):
        host = nxt.hosts[h]
        slots = ops.map(host.slots, lambda sl: ops.ite(released_at_close(ops, sl, a.conn), empty_slot(), sl))
        host = attrs.evolve(put_ep(ops, host, a.conn, closed_endpoint()), slots=slots)
        nxt = put_host(ops, nxt, h, host)
    return Step(enabled, OK, 0, nxt)


# --- the application's address space (environment) ---------------------------


def _page_range(ops: Ops, cfg: Config, a: PagesArgs) -> tuple[Callable[[Any], Any], Any]:
    def inside(p: Any) -> Any:
        return ops.and_(a.page <= p, p < a.page + a.npages)

    bounds = ops.and_(valid_host(ops, a.host), a.npages >= 1, a.page >= 0, a.page + a.npages <= cfg.pages)
    return inside, bounds


def alloc(cfg: Config, s: State, a: PagesArgs, ops: Ops) -> Step:
    """MEM-01: the application maps zero-filled pages (possibly where it freed before)."""
    host = get_host(ops, s, a.host)
    inside, bounds = _page_range(ops, cfg, a)
    free_now = ops.forall_at(host.mapped, lambda p, m: ops.implies(inside(p), ops.not_(m)))
    mapped = ops.map_at(host.mapped, lambda p, m: ops.or_(inside(p), m))
    mem = ops.mem_zero(host.mem, a.page * cfg.page_size, a.npages * cfg.page_size)
    nxt = put_host(ops, s, a.host, attrs.evolve(host, mapped=mapped, mem=mem))
    return Step(ops.and_(bounds, free_now), OK, 0, nxt)


def free(cfg: Config, s: State, a: PagesArgs, ops: Ops) -> Step:
    """MEM-04, CACHE-04: the application unmaps pages. The switch first calls
    the provider's cache callback on the range (when it has one) and frees
    whatever that answers; it never frees memory it still has registered."""
    host = get_host(ops, s, a.host)
    inside, bounds = _page_range(ops, cfg, a)
    all_mapped = ops.forall_at(host.mapped, lambda p, m: ops.implies(inside(p), m))
    start, size = a.page * cfg.page_size, a.npages * cfg.page_size
    none_live = ops.forall(
        host.slots, lambda sl: ops.not_(ops.and_(live(ops, sl), overlaps(ops, sl.addr, sl.length, start, size)))
    )
    released = cache_callback(cfg, s, CallbackArgs(a.host, start, size), ops)
    after = ops.ite(released.status == OK, released.next, s) if cfg.has_cache else s
    host = get_host(ops, after, a.host)
    mapped = ops.map_at(host.mapped, lambda p, m: ops.and_(ops.not_(inside(p)), m))
    nxt = put_host(ops, after, a.host, attrs.evolve(host, mapped=mapped))
    status = released.status if cfg.has_cache else OK
    why = released.why if cfg.has_cache else R.NONE
    return Step(ops.and_(bounds, all_mapped, none_live), status, 0, nxt, why)


def app_write(cfg: Config, s: State, a: FillArgs, ops: Ops) -> Step:
    """MEM-03: the application fills its own mapped memory with a pattern."""
    host = get_host(ops, s, a.host)
    enabled = ops.and_(
        valid_host(ops, a.host), a.length >= 1, range_mapped(ops, cfg, host, a.addr, a.length)
    )
    mem = ops.mem_fill(host.mem, a.addr, a.length, a.seed)
    return Step(enabled, OK, 0, put_host(ops, s, a.host, attrs.evolve(host, mem=mem)))


# --- registration ------------------------------------------------------------


def _register(cfg: Config, s: State, a: Any, ops: Ops, kind: int, desc_len: Any) -> Step:
    host = get_host(ops, s, a.host)
    ep = get_ep(ops, host, a.sock)

    def same_key(sl: Slot) -> Any:
        return ops.and_(
            sl.used, sl.kind == kind, sl.sock == a.sock, sl.addr == a.addr,
            sl.length == a.length, sl.flags == a.flags,
        )

    live_found, live_idx = ops.find(host.slots, lambda sl: ops.and_(same_key(sl), sl.refs > 0))
    cached_found, cached_idx = ops.find(host.slots, lambda sl: ops.and_(same_key(sl), sl.refs == 0))
    free_found, free_idx = ops.find(host.slots, lambda sl: ops.not_(sl.used))
    range_ok = range_mapped(ops, cfg, host, a.addr, a.length)
    rdma = kind == KIND_RDMA
    checks = [
        (ep.conn != CONNECTED, WSAENOTCONN, R.RREG_NOT_CONNECTED if rdma else R.REG_NOT_CONNECTED),
        (ops.not_(valid_flags(ops, a.flags)), WSAEINVAL, R.RREG_BAD_FLAGS if rdma else R.REG_BAD_FLAGS),
        (a.length < 1, WSAEINVAL, R.RREG_ZERO_LENGTH if rdma else R.REG_ZERO_LENGTH),
        (ops.not_(range_ok), WSAEFAULT, R.RREG_BAD_RANGE if rdma else R.REG_BAD_RANGE),
    ]
    if rdma:
        checks.append((desc_len < cfg.descriptor_size, WSAEFAULT, R.RREG_BLOCK_TOO_SMALL))
    checks.append((ops.not_(ops.or_(live_found, cached_found, free_found)), WSAENOBUFS,
                   R.RREG_TABLE_FULL if rdma else R.REG_TABLE_FULL))
    path = ops.ite(live_found, R.RREG_REPEATED if rdma else R.REG_REPEATED,
                   ops.ite(cached_found, R.RREG_REEXPOSED if rdma else R.REG_CACHE_HIT,
                           R.RREG_NEW if rdma else R.REG_NEW))
    status, why = decide(ops, checks, OK, path)

    idx = ops.ite(live_found, live_idx, ops.ite(cached_found, cached_idx, free_idx))
    old = ops.select(host.slots, idx, empty_slot())
    # A cache hit on a local buffer hands back its handle (CACHE-02); an RDMA
    # buffer re-exposed from the cache gets a new descriptor, so one revoked
    # by deregistration never works again (CACHE-03).
    fresh_id = ops.ite(live_found, False, ops.ite(cached_found, not keeps_id_on_cache_hit(kind), True))
    rid = ops.ite(fresh_id, s.next_id, old.rid)
    new_slot = Slot(
        used=True, kind=kind, sock=a.sock, addr=a.addr, length=a.length, flags=a.flags,
        refs=ops.ite(live_found, old.refs + 1, 1), rid=rid,
    )
    host2 = attrs.evolve(host, slots=ops.update(host.slots, idx, new_slot))
    nxt = attrs.evolve(put_host(ops, s, a.host, host2), next_id=ops.ite(fresh_id, s.next_id + 1, s.next_id))
    ok = status == OK
    result = ops.ite(ok, rid, 0)
    if kind == KIND_RDMA:  # RREG-03: a block too small is answered with the size needed
        result = ops.ite(ops.and_(status == WSAEFAULT, range_ok), cfg.descriptor_size, result)
    return Step(valid_host(ops, a.host), status, result, ops.ite(ok, nxt, s), why)


def register_memory(cfg: Config, s: State, a: RegisterArgs, ops: Ops) -> Step:
    """WSPRegisterMemory: REG-01..09, ACC-01, MEM-02, CACHE-02."""
    return _register(cfg, s, a, ops, KIND_LOCAL, 0)


def register_rdma_memory(cfg: Config, s: State, a: RegisterRdmaArgs, ops: Ops) -> Step:
    """WSPRegisterRdmaMemory: RREG-01..06, ACC-01, MEM-02, CACHE-03."""
    return _register(cfg, s, a, ops, KIND_RDMA, a.desc_len)


def _deregister(cfg: Config, s: State, a: DeregisterArgs, ops: Ops, kind: int) -> Step:
    host = get_host(ops, s, a.host)
    ep = get_ep(ops, host, a.sock)
    found, idx = ops.find(host.slots, lambda sl: live_registration(ops, sl, kind, a.sock, a.rid))
    in_use = False
    if kind == KIND_LOCAL:  # DEREG-03: a posted receive is using the buffer
        in_use = ops.and_(ep.recv == RECV_POSTED, ep.recv_handle == a.rid)
    rdma = kind == KIND_RDMA
    old = ops.select(host.slots, idx, empty_slot())
    path = ops.ite(old.refs == 1, R.RDEREG_LAST if rdma else R.DEREG_LAST,
                   R.RDEREG_DROPPED if rdma else R.DEREG_DROPPED)
    status, why = decide(ops, [(ops.not_(found), WSAEINVAL, R.RDEREG_NOT_LIVE if rdma else R.DEREG_NOT_LIVE),
                               (in_use, WSAEINVAL, R.DEREG_IN_USE)], OK, path)
    dropped = attrs.evolve(old, refs=old.refs - 1)
    # The last reference either leaves the registration cached (CACHE-02,
    # CACHE-03: no longer live, so its descriptor no longer works) or, for a
    # provider without a cache, releases it (DEREG-04).
    kept = ops.ite(ops.and_(dropped.refs == 0, ops.not_(cfg.has_cache)), empty_slot(), dropped)
    nxt = put_host(ops, s, a.host, attrs.evolve(host, slots=ops.update(host.slots, idx, kept)))
    return Step(valid_host(ops, a.host), status, 0, ops.ite(status == OK, nxt, s), why)


def deregister_memory(cfg: Config, s: State, a: DeregisterArgs, ops: Ops) -> Step:
    """WSPDeregisterMemory: DEREG-01..04."""
    return _deregister(cfg, s, a, ops, KIND_LOCAL)


def deregister_rdma_memory(cfg: Config, s: State, a: DeregisterArgs, ops: Ops) -> Step:
    """WSPDeregisterRdmaMemory: RDEREG-01..03."""
    return _deregister(cfg, s, a, ops, KIND_RDMA)


def cache_callback(cfg: Config, s: State, a: CallbackArgs, ops: Ops) -> Step:
    """WSPMemoryRegistrationCacheCallback: CACHE-04, CACHE-05."""
    host = get_host(ops, s, a.host)

    def hits(sl: Slot) -> Any:
        return callback_hits(ops, sl, a.addr, a.size)

    pinned_live = ops.exists(host.slots, lambda sl: ops.and_(live(ops, sl), hits(sl)))
    any_cached = ops.exists(host.slots, lambda sl: ops.and_(cached(ops, sl), hits(sl)))
    status, why = decide(ops, [(pinned_live, WSAEFAULT, R.CALLBACK_LIVE),
                               (ops.not_(any_cached), WSAEINVAL, R.CALLBACK_NOTHING)], OK, R.CALLBACK_RELEASED)
    slots = ops.map(host.slots, lambda sl: ops.ite(ops.and_(cached(ops, sl), hits(sl)), empty_slot(), sl))
    nxt = put_host(ops, s, a.host, attrs.evolve(host, slots=slots))
    enabled = ops.and_(valid_host(ops, a.host), cfg.has_cache)
    return Step(enabled, status, 0, ops.ite(status == OK, nxt, s), why)


# --- data transfer -----------------------------------------------------------


def _rdma(cfg: Config, s: State, a: RdmaArgs, ops: Ops, write: bool) -> Step:
    host = get_host(ops, s, a.host)
    peer_id = 1 - a.host
    peer = get_host(ops, s, peer_id)
    ep = get_ep(ops, host, a.sock)
    # The local buffers are the write's source and the read's sink (ACC-03).
    local_checks = connection_checks(ops, ep) + sge_checks(ops, cfg, host, a.sock, a.sges,
                                                           MEM_READ if write else MEM_WRITE)
    local, _ = decide(ops, local_checks, OK, R.NONE)
    total = total_length(a.sges)
    found, idx = ops.find(peer.slots, lambda sl: live_registration(ops, sl, KIND_RDMA, a.sock, a.desc))
    target = ops.select(peer.slots, idx, empty_slot())
    # RDMA-05, ACC-02: a refused target has the outcomes of RDMA-08
    refusal = ops.ite(a.choice == AT_CALL, WSAEINVAL, WSAECONNRESET)
    status, why = decide(ops, local_checks + [
        (ops.not_(found), refusal, R.TARGET_UNKNOWN),
        (ops.not_(within(ops, a.offset, total, target.length)), refusal, R.TARGET_RANGE),
        (ops.not_(grants(ops, target.flags, MEM_WRITE if write else MEM_READ)), refusal, R.TARGET_ACCESS),
    ], OK, R.WRITTEN if write else R.READ)
    refused = ops.and_(local == OK, status != OK)
    # The bytes move, in buffer order, between the local buffers and the
    # target at offset (RDMA-06, RDMA-07).
    local_mem, peer_mem = host.mem, peer.mem
    at = target.addr + a.offset
    for sge in a.sges:
        if write:
            peer_mem = ops.mem_copy(peer_mem, at, local_mem, sge.addr, sge.length)
        else:
            local_mem = ops.mem_copy(local_mem, sge.addr, peer_mem, at, sge.length)
        at = at + sge.length
    moved = put_host(ops, s, a.host, attrs.evolve(host, mem=local_mem))
    moved = put_host(ops, moved, peer_id, attrs.evolve(peer, mem=peer_mem))
    nxt = ops.ite(status == OK, moved, ops.ite(status == WSAECONNRESET, fail_connection(ops, s, a.sock), s))
    enabled = ops.and_(
        valid_host(ops, a.host),
        ops.or_(a.choice == AT_CALL, ops.and_(refused, a.choice == REFUSED_BY_PEER)),
        True if write else cfg.has_rdma_read,
    )
    return Step(enabled, status, ops.ite(status == OK, total, 0), nxt, why)


def rdma_write(cfg: Config, s: State, a: RdmaArgs, ops: Ops) -> Step:
    """WSPRdmaWrite: RDMA-01..08, ACC-03, CONN-01, CONN-02."""
    return _rdma(cfg, s, a, ops, write=True)


def rdma_read(cfg: Config, s: State, a: RdmaArgs, ops: Ops) -> Step:
    """WSPRdmaRead: RDMA-01..08, ACC-03, CONN-01, CONN-02, EXT-03."""
    return _rdma(cfg, s, a, ops, write=False)


def post_recv(cfg: Config, s: State, a: RecvArgs, ops: Ops) -> Step:
    """WSPRecv: XFER-01, XFER-02 (one posted receive per endpoint)."""
    host = get_host(ops, s, a.host)
    ep = get_ep(ops, host, a.sock)
    status, why = decide(ops, connection_checks(ops, ep) + sge_checks(
        ops, cfg, host, a.sock, (Sge(length=a.length, addr=a.addr, handle=a.handle),), MEM_WRITE), WSA_IO_PENDING, R.POSTED)
    posted = attrs.evolve(ep, recv=RECV_POSTED, recv_handle=a.handle, recv_addr=a.addr, recv_len=a.length)
    nxt = put_host(ops, s, a.host, put_ep(ops, host, a.sock, posted))
    enabled = ops.and_(valid_host(ops, a.host), ep.recv == RECV_IDLE)
    return Step(enabled, status, 0, ops.ite(status == WSA_IO_PENDING, nxt, s), why)


def send(cfg: Config, s: State, a: SendArgs, ops: Ops) -> Step:
    """WSPSend: XFER-01, XFER-03, CONN-01, CONN-02."""
    host = get_host(ops, s, a.host)
    peer_id = 1 - a.host
    peer = get_host(ops, s, peer_id)
    ep = get_ep(ops, host, a.sock)
    pep = get_ep(ops, peer, a.sock)
    local_checks = connection_checks(ops, ep) + sge_checks(ops, cfg, host, a.sock, a.sges, MEM_READ)
    local, _ = decide(ops, local_checks, OK, R.NONE)
    total = total_length(a.sges)
    status, why = decide(ops, local_checks + [(ops.not_(fits_receive(ops, pep, total)), WSAECONNRESET, R.SEND_TOO_LONG)], OK, R.DELIVERED)
    peer_mem, at = peer.mem, pep.recv_addr
    for sge in a.sges:
        peer_mem = ops.mem_copy(peer_mem, at, host.mem, sge.addr, sge.length)
        at = at + sge.length
    done = Endpoint(conn=pep.conn, recv=RECV_DONE, recv_status=OK, recv_bytes=total)
    delivered = put_host(ops, s, peer_id, put_ep(ops, attrs.evolve(peer, mem=peer_mem), a.sock, done))
    nxt = ops.ite(status == OK, delivered, ops.ite(status == WSAECONNRESET, fail_connection(ops, s, a.sock), s))
    # A send to a peer with no posted receive would wait (RNR): the switch
    # always posts receives first, so that step is never taken (XFER-03).
    enabled = ops.and_(valid_host(ops, a.host), ops.or_(local != OK, pep.recv == RECV_POSTED))
    return Step(enabled, status, ops.ite(status == OK, total, 0), nxt, why)


def recv_done(cfg: Config, s: State, a: EndpointArgs, ops: Ops) -> Step:
    """The switch reaps a completed receive: XFER-02."""
    host = get_host(ops, s, a.host)
    ep = get_ep(ops, host, a.sock)
    idle = attrs.evolve(ep, recv=RECV_IDLE, recv_status=0, recv_bytes=0)
    nxt = put_host(ops, s, a.host, put_ep(ops, host, a.sock, idle))
    why = ops.ite(ep.recv_status == OK, R.RECEIVED, R.FLUSHED)
    return Step(ops.and_(valid_host(ops, a.host), ep.recv == RECV_DONE), ep.recv_status, ep.recv_bytes, nxt, why)


# --- the table ---------------------------------------------------------------


@attrs.frozen
class Transition:
    name: str
    fn: Callable[[Config, State, Any, Ops], Step]
    args: type
    clauses: tuple[str, ...]
    spi: bool  # an SPI call (True) or an event of the environment (False)
    choices: int = 1  # outcomes the SPI leaves open (RDMA-08): AT_CALL, REFUSED_BY_PEER


TRANSITIONS: dict[str, Transition] = {
    t.name: t
    for t in (
        Transition("startup_ex", startup_ex, StartupArgs,
                   ("START-01", "START-02", "START-03", "START-04", "START-05", "START-06"), True),
        Transition("get_extension", get_extension, LookupArgs,
                   ("EXT-01", "EXT-02", "EXT-03", "EXT-04"), True),
        Transition("connect", connect, ConnArgs, ("SOCK-01",), False),
        Transition("close", close, ConnArgs, ("SOCK-02", "CACHE-06"), False),
        Transition("alloc", alloc, PagesArgs, ("MEM-01",), False),
        Transition("free", free, PagesArgs, ("MEM-04", "CACHE-04"), False),
        Transition("app_write", app_write, FillArgs, ("MEM-03",), False),
        Transition("register_memory", register_memory, RegisterArgs,
                   ("REG-01", "REG-02", "REG-03", "REG-04", "REG-05", "REG-06", "REG-07", "REG-08",
                    "REG-09", "ACC-01", "MEM-02", "CACHE-02"), True),
        Transition("deregister_memory", deregister_memory, DeregisterArgs,
                   ("DEREG-01", "DEREG-02", "DEREG-03", "DEREG-04"), True),
        Transition("register_rdma_memory", register_rdma_memory, RegisterRdmaArgs,
                   ("RREG-01", "RREG-02", "RREG-03", "RREG-04", "RREG-05", "RREG-06", "ACC-01",
                    "MEM-02", "CACHE-03"), True),
        Transition("deregister_rdma_memory", deregister_rdma_memory, DeregisterArgs,
                   ("RDEREG-01", "RDEREG-02", "RDEREG-03"), True),
        Transition("cache_callback", cache_callback, CallbackArgs,
                   ("CACHE-01", "CACHE-04", "CACHE-05"), True),
        Transition("rdma_write", rdma_write, RdmaArgs,
                   ("RDMA-01", "RDMA-02", "RDMA-03", "RDMA-04", "RDMA-05", "RDMA-06", "RDMA-08",
                    "ACC-02", "ACC-03", "CONN-01", "CONN-02"), True, choices=2),
        Transition("rdma_read", rdma_read, RdmaArgs,
                   ("RDMA-01", "RDMA-02", "RDMA-03", "RDMA-04", "RDMA-05", "RDMA-07", "RDMA-08",
                    "ACC-02", "ACC-03", "CONN-01", "CONN-02", "EXT-03"), True, choices=2),
        Transition("post_recv", post_recv, RecvArgs, ("XFER-01", "XFER-02", "CONN-02"), True),
        Transition("send", send, SendArgs, ("XFER-01", "XFER-03", "CONN-01", "CONN-02"), True),
        Transition("recv_done", recv_done, EndpointArgs, ("XFER-02",), False),
    )
}
