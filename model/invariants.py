"""The model's safety properties, written once over ``ops``.

Two kinds:

* ``STATE_INVARIANTS``: predicates on one state. The prover shows each is
  inductive (Init => Inv, Inv and T => Inv'); the Hypothesis tests evaluate
  them after every step.
* ``STEP_PROPERTIES``: predicates on one step (pre-state, transition, its
  arguments, the resulting ``Step``). The prover shows Inv and T => P for
  every transition; the tests evaluate them on every step taken.

Each names the spec clause(s) it states. Where a property needed help to be
provable by induction, the helper invariant says so in its docstring.

They are stated from the state's fields (never through the transitions'
helpers, see below) and reach a host's registrations, endpoints and pages
only through ``ops``' collection operations, so the unbounded prover states
each as a quantified formula over tables of any size.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs

from sanspi.model.constants import (
    CLOSED,
    CONNECTED,
    ERRORED,
    KIND_LOCAL,
    KIND_RDMA,
    MEM_READ,
    MEM_READWRITE,
    MEM_WRITE,
    OK,
    RECV_DONE,
    RECV_IDLE,
    RECV_POSTED,
    VALID_FLAGS,
    WSA_IO_PENDING,
    WSA_OPERATION_ABORTED,
)
from sanspi.model.ops import Ops
from sanspi.model.state import HOSTS, Config, Endpoint, Slot, State
from sanspi.model.transitions import Step


# --- the clauses' words, stated from the state's fields ----------------------
#
# The properties never call the transitions' own helpers (grants,
# live_registration, contains, find, total_length, range_mapped, ...): a
# property stated through a helper agrees with that helper when it is wrong.
# These few definitions say what the clauses say, once more and on purpose.

#: ACC-02, ACC-03: the flags that allow each use of a registration.
ALLOWING = {MEM_READ: (MEM_READ, MEM_READWRITE), MEM_WRITE: (MEM_WRITE, MEM_READWRITE)}


def _allows(ops: Ops, flags: Any, use: int) -> Any:
    return ops.or_(*[flags == f for f in ALLOWING[use]])


def _is_live(ops: Ops, sl: Slot, kind: int, sock: Any, rid: Any) -> Any:
    """``sl`` is the registration ``rid`` of ``kind`` on ``sock`` and holds a reference."""
    return ops.and_(sl.used, sl.refs >= 1, sl.kind == kind, sl.sock == sock, sl.rid == rid)


def _holds(ops: Ops, sl: Slot, addr: Any, length: Any) -> Any:
    """Every byte of [addr, addr+length) lies in the registration's range."""
    return ops.and_(sl.addr <= addr, addr + length <= sl.addr + sl.length)


def _endpoint(ops: Ops, s: State, host: Any, sock: Any) -> Endpoint:
    return ops.select(ops.select(s.hosts, host, s.hosts[0]).eps, sock, Endpoint())


def _every_slot(ops: Ops, s: State, pred: Callable[[int, Slot], Any]) -> Any:
    """pred(host, registration) for every registration of both hosts."""
    return ops.and_(*[ops.forall(s.hosts[h].slots, lambda sl, h=h: pred(h, sl)) for h in range(HOSTS)])


def _every_slot_change(ops: Ops, s: State, after: State, pred: Callable[[Slot, Slot], Any],
                       host: int | None = None) -> Any:
    """pred(before, after) for slot i of ``s`` and slot i of ``after``, for
    every slot of both hosts (or of ``host``)."""
    def at(h: int) -> Any:
        return ops.forall_at(s.hosts[h].slots,
                             lambda i, pre: pred(pre, ops.select(after.hosts[h].slots, i, Slot())))

    return ops.and_(*[at(h) for h in (range(HOSTS) if host is None else (host,))])


def _is_empty(ops: Ops, sl: Slot) -> Any:
    return ops.and_(*[getattr(sl, f.name) == f.default for f in attrs.fields(Slot) if f.name != "used"])


# --- state invariants --------------------------------------------------------


def inv_slots_well_formed(cfg: Config, s: State, ops: Ops) -> Any:
    """REG-02, REG-04, ACC-01: a registration has a kind, valid flags, a
    non-empty range inside the address space, a socket and an issued id;
    an unused slot is all zeros. Reference counts are never negative."""
    def well_formed(_: int, sl: Slot) -> Any:
        return ops.ite(sl.used, ops.and_(
            ops.or_(sl.kind == KIND_LOCAL, sl.kind == KIND_RDMA),
            ops.or_(*[sl.flags == f for f in VALID_FLAGS]),
            sl.length >= 1, sl.addr >= 0, sl.addr + sl.length <= cfg.memsize,
            sl.sock >= 0, sl.sock < cfg.sockets,
            sl.refs >= 0, sl.rid >= 1, sl.rid < s.next_id,
        ), _is_empty(ops, sl))

    return ops.and_(s.next_id >= 1, _every_slot(ops, s, well_formed))


def inv_cached_only_with_cache(cfg: Config, s: State, ops: Ops) -> Any:
    """DEREG-04, CACHE-01: a registration outlives its last reference only in
    a provider that has the cache (and so the callback)."""
    return _every_slot(ops, s, lambda _, sl: ops.implies(ops.and_(sl.used, sl.refs == 0), cfg.has_cache))


def inv_pinned(cfg: Config, s: State, ops: Ops) -> Any:
    """CACHE-02, CACHE-04, MEM-04: every registration, cached or live, lies
    in mapped memory: every page holding one of its bytes is mapped."""
    def pinned(h: int, sl: Slot) -> Any:
        def page(p: Any, mapped: Any) -> Any:
            holds_a_byte = ops.and_(sl.addr < (p + 1) * cfg.page_size, p * cfg.page_size < sl.addr + sl.length)
            return ops.implies(holds_a_byte, mapped)

        return ops.implies(sl.used, ops.forall_at(s.hosts[h].mapped, page))

    return _every_slot(ops, s, pinned)


def inv_socket_open(cfg: Config, s: State, ops: Ops) -> Any:
    """SOCK-02, CACHE-06: no registration outlives its socket."""
    return _every_slot(ops, s, lambda h, sl: ops.implies(sl.used, _endpoint(ops, s, h, sl.sock).conn != CLOSED))


def inv_unique_ids(cfg: Config, s: State, ops: Ops) -> Any:
    """REG-07: handles and descriptor ids are unique among registrations of
    both hosts."""
    def distinct(a: Slot, b: Slot) -> Any:
        return ops.implies(ops.and_(a.used, b.used), a.rid != b.rid)

    mine, theirs = s.hosts[0].slots, s.hosts[1].slots
    within = [ops.forall_at(t, lambda i, a, t=t: ops.forall_at(t, lambda j, b: ops.implies(i < j, distinct(a, b))))
              for t in (mine, theirs)]
    across = ops.forall(mine, lambda a: ops.forall(theirs, lambda b: distinct(a, b)))
    return ops.and_(*within, across)


def inv_unique_keys(cfg: Config, s: State, ops: Ops) -> Any:
    """REG-05, CACHE-02: one registration per (kind, socket, buffer, flags)
    on a host, so a repeated registration has exactly one entry to count on."""
    def distinct(i: Any, a: Slot, j: Any, b: Slot) -> Any:
        same = ops.and_(i < j, a.used, b.used, a.kind == b.kind, a.sock == b.sock,
                        a.addr == b.addr, a.length == b.length, a.flags == b.flags)
        return ops.not_(same)

    return ops.and_(*[
        ops.forall_at(t, lambda i, a, t=t: ops.forall_at(t, lambda j, b: distinct(i, a, j, b)))
        for t in (s.hosts[h].slots for h in range(HOSTS))
    ])


def inv_receives(cfg: Config, s: State, ops: Ops) -> Any:
    """XFER-02, DEREG-03, CONN-01: a posted receive sits on a connected
    endpoint in a live local registration of its socket that grants
    MEM_WRITE; a completed one holds data or was flushed; an endpoint holds
    no receive fields it is not using."""
    def endpoint(h: int, sock: Any, ep: Endpoint) -> Any:
        posted = ep.recv == RECV_POSTED
        holder = ops.exists(s.hosts[h].slots, lambda sl: ops.and_(
            _is_live(ops, sl, KIND_LOCAL, sock, ep.recv_handle), _allows(ops, sl.flags, MEM_WRITE),
            _holds(ops, sl, ep.recv_addr, ep.recv_len)))
        return ops.and_(
            ops.or_(ep.recv == RECV_IDLE, posted, ep.recv == RECV_DONE),
            ops.implies(posted, ops.and_(ep.conn == CONNECTED, ep.recv_len >= 1, holder)),
            ops.implies(ops.not_(posted), ops.and_(ep.recv_handle == 0, ep.recv_addr == 0, ep.recv_len == 0)),
            ops.implies(ep.recv == RECV_IDLE, ops.and_(ep.recv_status == 0, ep.recv_bytes == 0)),
            # a completed receive got data (0) or was flushed (WSA_OPERATION_ABORTED, no bytes)
            ops.implies(ep.recv == RECV_DONE, ops.or_(
                ops.and_(ep.recv_status == OK, ep.recv_bytes >= 1),
                ops.and_(ep.recv_status == WSA_OPERATION_ABORTED, ep.recv_bytes == 0))),
            ops.implies(ep.conn == CLOSED, ep.recv == RECV_IDLE),
        )

    return ops.and_(*[ops.forall_at(s.hosts[h].eps, lambda sock, ep, h=h: endpoint(h, sock, ep))
                      for h in range(HOSTS)])


def inv_connections_symmetric(cfg: Config, s: State, ops: Ops) -> Any:
    """SOCK-01, CONN-01: both ends of a connection are in the same state."""
    def same(sock: Any, x: Endpoint) -> Any:
        y = ops.select(s.hosts[1].eps, sock, Endpoint())
        return ops.and_(ops.or_(x.conn == CLOSED, x.conn == CONNECTED, x.conn == ERRORED), x.conn == y.conn)

    return ops.forall_at(s.hosts[0].eps, same)


def inv_startups_bounded(cfg: Config, s: State, ops: Ops) -> Any:
    """START-04: a provider never accepts more startups than its limit."""
    return ops.and_(*[ops.and_(h.startups >= 0, h.startups <= cfg.max_startups) for h in s.hosts])


STATE_INVARIANTS: dict[str, Callable[[Config, State, Ops], Any]] = {
    f.__name__.removeprefix("inv_"): f
    for f in (
        inv_slots_well_formed,
        inv_cached_only_with_cache,
        inv_pinned,
        inv_socket_open,
        inv_unique_ids,
        inv_unique_keys,
        inv_receives,
        inv_connections_symmetric,
        inv_startups_bounded,
    )
}


# --- step properties ---------------------------------------------------------

RDMA_OPS = ("rdma_write", "rdma_read")
DATA_OPS = RDMA_OPS + ("send",)


def _message_length(a: Any) -> Any:
    """The bytes a transfer moves: its buffers' lengths added up (RDMA-05, XFER-03)."""
    total = 0
    for sge in a.sges:
        total = total + sge.length
    return total


def _some_target(ops: Ops, s: State, a: Any, pred: Callable[[Slot], Any]) -> Any:
    """Some registration of the peer is the target, the live RDMA
    registration on this connection the descriptor names, and has ``pred``."""
    peer = ops.select(s.hosts, 1 - a.host, s.hosts[0])
    return ops.exists(peer.slots, lambda t: ops.and_(_is_live(ops, t, KIND_RDMA, a.sock, a.desc), pred(t)))


def _buffers_allowed(cfg: Config, s: State, a: Any, ops: Ops, use: int) -> Any:
    """RDMA-03, RDMA-04, XFER-01, ACC-03: 1 to max_sge buffers, each
    non-empty and inside a live local registration of the socket, named by
    its handle, that allows ``use``; the caller's end is connected (CONN-02)."""
    if not 1 <= len(a.sges) <= cfg.max_sge:  # a call's buffer count is its shape
        return False
    host = ops.select(s.hosts, a.host, s.hosts[0])
    conds = [_endpoint(ops, s, a.host, a.sock).conn == CONNECTED]
    for sge in a.sges:
        conds.append(sge.length >= 1)
        conds.append(ops.exists(host.slots, lambda sl, sge=sge: ops.and_(
            _is_live(ops, sl, KIND_LOCAL, a.sock, sge.handle), _allows(ops, sl.flags, use),
            _holds(ops, sl, sge.addr, sge.length))))
    return ops.and_(*conds)


def _transfer_needs_permission(cfg: Config, s: State, a: Any, step: Step, ops: Ops, remote: int, local: int) -> Any:
    """A successful transfer went through a live RDMA registration of the peer
    on this connection allowing ``remote``, inside it at the offset, with live
    local buffers of this socket allowing ``local``."""
    total = _message_length(a)
    target = _some_target(ops, s, a, lambda t: ops.and_(
        _allows(ops, t.flags, remote), a.offset >= 0, a.offset + total <= t.length))
    return ops.implies(step.status == OK, ops.and_(target, _buffers_allowed(cfg, s, a, ops, local)))


def prop_write_needs_permission(cfg: Config, name: str, s: State, a: Any, step: Step, ops: Ops) -> Any:
    """RDMA-03, RDMA-04, RDMA-06, ACC-02, ACC-03 (invariant 1): a successful
    RDMA write goes to a live RDMA registration of the peer on this
    connection that grants MEM_WRITE, inside it at the offset, from live
    local sources granting MEM_READ."""
    return _transfer_needs_permission(cfg, s, a, step, ops, MEM_WRITE, MEM_READ) if name == "rdma_write" else True


def prop_read_needs_permission(cfg: Config, name: str, s: State, a: Any, step: Step, ops: Ops) -> Any:
    """RDMA-03, RDMA-04, RDMA-07, ACC-02, ACC-03 (invariant 2): a successful
    RDMA read needs MEM_READ on the remote registration and local sinks
    registered with MEM_WRITE."""
    return _transfer_needs_permission(cfg, s, a, step, ops, MEM_READ, MEM_WRITE) if name == "rdma_read" else True


def prop_send_needs_permission(cfg: Config, name: str, s: State, a: Any, step: Step, ops: Ops) -> Any:
    """XFER-01, ACC-03: a successful WSPSend reads only from 1 to max_sge
    non-empty buffers, each inside a live local registration of the socket
    (named by its handle) that grants MEM_READ."""
    if name != "send":
        return True
    return ops.implies(step.status == OK, _buffers_allowed(cfg, s, a, ops, MEM_READ))


def prop_send_fits_receive(cfg: Config, name: str, s: State, a: Any, step: Step, ops: Ops) -> Any:
    """XFER-02, XFER-03: a successful WSPSend delivers into a receive posted
    on the peer's end of the connection, and the whole message fits it (a
    message longer than the receive fails the connection instead)."""
    if name != "send":
        return True
    pep = _endpoint(ops, s, 1 - a.host, a.sock)
    return ops.implies(step.status == OK, ops.and_(
        pep.recv == RECV_POSTED, pep.conn == CONNECTED, _message_length(a) <= pep.recv_len))


def prop_no_revived_descriptor(cfg: Config, name: str, s: State, a: Any, step: Step, ops: Ops) -> Any:
    """RDEREG-02, CACHE-03, CACHE-04 (invariant 3): a descriptor that is not
    live stays dead: every RDMA registration that becomes live carries an id
    never issued before. With prop_*_needs_permission (success only through
    live registrations) no operation succeeds through a descriptor after its
    deregistration or the callback's release."""
    def stays_dead(pre: Slot, post: Slot) -> Any:
        was_live = ops.and_(pre.used, pre.refs >= 1, pre.kind == KIND_RDMA, pre.rid == post.rid)
        became_live = ops.and_(post.used, post.refs >= 1, post.kind == KIND_RDMA, ops.not_(was_live))
        return ops.implies(became_live, post.rid >= s.next_id)

    return ops.and_(step.next.next_id >= s.next_id, _every_slot_change(ops, s, step.next, stays_dead))


def prop_errored_connection_fails(cfg: Config, name: str, s: State, a: Any, step: Step, ops: Ops) -> Any:
    """CONN-02 (invariant 7): on a connection in the error state no data
    transfer succeeds."""
    if name not in DATA_OPS + ("post_recv",):
        return True
    ep = _endpoint(ops, s, a.host, a.sock)
    return ops.implies(ep.conn == ERRORED, ops.and_(step.status != OK, step.status != WSA_IO_PENDING))


def prop_refcount_release(cfg: Config, name: str, s: State, a: Any, step: Step, ops: Ops) -> Any:
    """DEREG-02, DEREG-04, RDEREG-03, CACHE-04, SOCK-02 (invariant 5): a live
    registration disappears only when its last reference is dropped by a
    provider without cache, or when its socket closes; a cached one only by
    the callback or close."""
    def released_only_so(pre: Slot, post: Slot) -> Any:
        gone = ops.and_(pre.used, ops.not_(post.used))
        if name == "close":
            allowed = pre.sock == a.conn
        elif name in ("deregister_memory", "deregister_rdma_memory"):
            allowed = ops.and_(pre.refs == 1, ops.not_(cfg.has_cache))
        elif name in ("cache_callback", "free"):
            allowed = pre.refs == 0
        else:
            allowed = False
        # a count changes by at most one per call
        by_one = ops.implies(ops.and_(pre.used, post.used, pre.rid == post.rid),
                             ops.or_(post.refs == pre.refs, post.refs == pre.refs + 1, post.refs == pre.refs - 1))
        return ops.and_(ops.implies(gone, allowed), by_one)

    return _every_slot_change(ops, s, step.next, released_only_so)


def may_write(cfg: Config, name: str, s: State, a: Any, step: Step, ops: Ops, host: int, i: Any) -> Any:
    """May the step change byte ``i`` of ``host``? (MEM-03, MEM-01, RDMA-06,
    RDMA-07, XFER-03.) Anything else must stay as it was."""
    ok = step.status == OK

    def inside(h: Any, addr: Any, length: Any) -> Any:
        return ops.and_(h == host, addr <= i, i < addr + length)

    if name == "app_write":
        return inside(a.host, a.addr, a.length)
    if name == "alloc":
        return inside(a.host, a.page * cfg.page_size, a.npages * cfg.page_size)
    if name == "rdma_write":  # the target's bytes from the offset on
        total = _message_length(a)
        return ops.and_(ok, _some_target(ops, s, a, lambda t: inside(1 - a.host, t.addr + a.offset, total)))
    if name == "rdma_read":
        return ops.and_(ok, ops.or_(*[inside(a.host, sge.addr, sge.length) for sge in a.sges]))
    if name == "send":  # the posted receive from its start, never past its length
        pep = _endpoint(ops, s, 1 - a.host, a.sock)
        total = _message_length(a)
        return ops.and_(ok, inside(1 - a.host, pep.recv_addr, ops.ite(total <= pep.recv_len, total, pep.recv_len)))
    return False


def frame_condition(cfg: Config, name: str, s: State, a: Any, step: Step, ops: Ops, host: int, i: Any) -> Any:
    """Invariant 8 at one byte: byte ``i`` of ``host`` changes only where the
    step may write."""
    changed = ops.mem_get(step.next.hosts[host].mem, i) != ops.mem_get(s.hosts[host].mem, i)
    return ops.implies(changed, may_write(cfg, name, s, a, step, ops, host, i))


def prop_refcount_accounting(cfg: Config, name: str, s: State, a: Any, step: Step, ops: Ops) -> Any:
    """REG-05, RREG-04, DEREG-02, RDEREG-03, counted per registration: a
    successful registration adds one reference to the registration of its
    key (kind, socket, buffer, flags), which exists afterwards, and changes
    no other count; a successful deregistration drops one from the live
    registration it names, which existed, and changes no other; close only
    drops counts; nothing else changes one."""
    ok = step.status == OK
    kind = {"register_memory": KIND_LOCAL, "deregister_memory": KIND_LOCAL,
            "register_rdma_memory": KIND_RDMA, "deregister_rdma_memory": KIND_RDMA}.get(name)
    if name in ("register_memory", "register_rdma_memory"):
        def keyed(sl: Slot) -> Any:
            return ops.and_(sl.used, sl.kind == kind, sl.sock == a.sock, sl.addr == a.addr,
                            sl.length == a.length, sl.flags == a.flags)

        def counted(h: int) -> Any:
            return _every_slot_change(ops, s, step.next, lambda pre, post: ops.ite(
                ops.and_(ok, h == a.host, keyed(post)), post.refs == pre.refs + 1, post.refs == pre.refs), h)

        made = ops.exists(ops.select(step.next.hosts, a.host, step.next.hosts[0]).slots, keyed)
        return ops.and_(ops.implies(ok, made), *[counted(h) for h in range(HOSTS)])
    if name in ("deregister_memory", "deregister_rdma_memory"):
        def named(sl: Slot) -> Any:
            return _is_live(ops, sl, kind, a.sock, a.rid)

        def counted(h: int) -> Any:
            return _every_slot_change(ops, s, step.next, lambda pre, post: ops.ite(
                ops.and_(ok, h == a.host, named(pre)), post.refs == pre.refs - 1, post.refs == pre.refs), h)

        existed = ops.exists(ops.select(s.hosts, a.host, s.hosts[0]).slots, named)
        return ops.and_(ops.implies(ok, existed), *[counted(h) for h in range(HOSTS)])
    if name == "close":
        return _every_slot_change(ops, s, step.next, lambda pre, post: post.refs <= pre.refs)
    return _every_slot_change(ops, s, step.next, lambda pre, post: post.refs == pre.refs)


STEP_PROPERTIES: dict[str, Callable[..., Any]] = {
    f.__name__.removeprefix("prop_"): f
    for f in (
        prop_write_needs_permission,
        prop_read_needs_permission,
        prop_send_needs_permission,
        prop_send_fits_receive,
        prop_no_revived_descriptor,
        prop_errored_connection_fails,
        prop_refcount_release,
        prop_refcount_accounting,
    )
}


def violations(cfg: Config, name: str, pre: State, args: Any, step: Step,
               invariants: dict | None = None, properties: dict | None = None) -> list[str]:
    """The checks a concrete step breaks: every state invariant on the next
    state, every step property, and the frame condition at each changed byte."""
    from sanspi.model.ops import CONCRETE

    invariants = STATE_INVARIANTS if invariants is None else invariants
    properties = STEP_PROPERTIES if properties is None else properties
    bad = [n for n, inv in invariants.items() if not inv(cfg, step.next, CONCRETE)]
    bad += [n for n, p in properties.items() if not p(cfg, name, pre, args, step, CONCRETE)]
    for h in range(HOSTS):
        for i in changed_bytes(pre.hosts[h].mem, step.next.hosts[h].mem):
            if not frame_condition(cfg, name, pre, args, step, CONCRETE, h, i):
                bad.append("frame")
                break
    return bad


def changed_bytes(before: bytes, after: bytes) -> list[int]:
    """Concrete helper: the indices where two memories differ."""
    if before == after:
        return []
    return [i for i, (x, y) in enumerate(zip(before, after)) if x != y]
