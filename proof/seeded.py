"""Deliberately wrong versions of the model, to show the prover can fail.

Each seeded bug breaks one clause, the way real providers and caches get it
wrong: by replacing one helper of model/transitions.py for the duration of a
``with`` block, or by wrapping one transition. A replaced helper is replaced
in every module of the package that names it, as an edit of its definition
would be: the invariants and step properties state the clauses from the
state's fields and never call the transitions' helpers, so a wrong helper
must surface as a counterexample, not be agreed with.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Iterator

import attrs

import sanspi.model.transitions as T
from sanspi.model import reasons as R
from sanspi.model.constants import CLOSED, MEM_READ, MEM_WRITE, WSAENOTCONN
from sanspi.model.ops import Ops


@contextlib.contextmanager
def _replaced(patches: dict[str, Any]) -> Iterator[None]:
    """Each helper of model/transitions.py named in ``patches`` replaced
    wherever a module of the package has it bound."""
    saved = []
    try:
        for name, fn in patches.items():
            original = getattr(T, name)
            for module in list(sys.modules.values()):
                if getattr(module, "__name__", "").startswith("sanspi.") and getattr(module, name, None) is original:
                    saved.append((module, name, original))
                    setattr(module, name, fn)
        yield
    finally:
        for module, name, original in reversed(saved):
            setattr(module, name, original)


@attrs.frozen
class SeededBug:
    name: str
    clause: str
    what: str
    patches: dict[str, Any] = attrs.field(factory=dict)  # helper name -> replacement
    wraps: dict[str, Callable] = attrs.field(factory=dict)  # transition -> wrapper(original)

    @contextlib.contextmanager
    def applied(self) -> Iterator[dict[str, T.Transition]]:
        """Patch the helpers; yield the transition table with wrapped entries."""
        with _replaced(self.patches):
            table = dict(T.TRANSITIONS)
            for name, wrap in self.wraps.items():
                table[name] = attrs.evolve(table[name], fn=wrap(table[name].fn))
            yield table


def _while(**patches: Any) -> Callable:
    """A wrapper: the transition runs with these helpers replaced (a bug in
    one call's code path, not in the helper every call shares)."""
    def wrap(fn):
        def buggy(cfg, s, a, ops):
            with _replaced(patches):
                return fn(cfg, s, a, ops)
        return buggy
    return wrap


def _keep_refs(fn):
    """A deregistration that reports success but drops no reference."""
    def buggy(cfg, s, a, ops):
        step = fn(cfg, s, a, ops)
        hosts = []
        for before, after in zip(s.hosts, step.next.hosts):
            def kept(i, q, before=before):
                p = ops.select(before.slots, i, T.empty_slot())
                return ops.ite(ops.and_(p.used, q.used, p.rid == q.rid), attrs.evolve(q, refs=p.refs), q)
            hosts.append(attrs.evolve(after, slots=ops.map_at(after.slots, kept)))
        return attrs.evolve(step, next=attrs.evolve(step.next, hosts=tuple(hosts)))
    return buggy


def _stale_id_counter(fn):
    """A registration that hands out an id without advancing the counter."""
    def buggy(cfg, s, a, ops):
        step = fn(cfg, s, a, ops)
        return attrs.evolve(step, next=attrs.evolve(step.next, next_id=s.next_id))
    return buggy


class _SlippedCopies:
    """ops whose copies land ``later`` bytes after where they should and move
    ``more`` bytes than asked (the classic offset and length slips)."""

    def __init__(self, ops: Ops, later: int, more: int):
        self._ops, self._later, self._more = ops, later, more

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ops, name)

    def mem_copy(self, dst, dst_at, src, src_at, n):
        return self._ops.mem_copy(dst, dst_at + self._later, src, src_at, n + self._more)


def _slipped(later: int = 0, more: int = 0) -> Callable:
    """A wrapper: the transition runs with slipped copies."""
    return lambda fn: lambda cfg, s, a, ops: fn(cfg, s, a, _SlippedCopies(ops, later, more))


_GRANTS = T.grants  # the correct one, bound before any patch


def _sources_checked_as_sinks(ops, flags, need):
    """grants() asked for MEM_READ answers as if asked for MEM_WRITE."""
    return _GRANTS(ops, flags, MEM_WRITE if need == MEM_READ else need)


def _closed_only(ops, ep):
    return [(ep.conn == CLOSED, WSAENOTCONN, R.NOT_CONNECTED)]


SEEDED_BUGS: tuple[SeededBug, ...] = (
    SeededBug("no-permission-check", "ACC-02", "registration flags are never checked",
              patches={"grants": lambda ops, flags, need: True}),
    SeededBug("off-by-one-bound", "RDMA-05", "the target bound admits one byte past the end",
              patches={"within": lambda ops, off, n, length: ops.and_(off >= 0, off + n <= length + 1)}),
    SeededBug("cached-counts-as-live", "RDEREG-02", "a cached (deregistered) registration still answers",
              patches={"live_registration": lambda ops, sl, kind, sock, rid: ops.and_(
                  sl.used, sl.kind == kind, sl.sock == sock, sl.rid == rid)}),
    SeededBug("descriptor-revived-from-cache", "CACHE-03", "a cache hit hands back the revoked descriptor",
              patches={"keeps_id_on_cache_hit": lambda kind: True}),
    SeededBug("refcount-not-decremented", "DEREG-02", "deregistration succeeds but keeps the reference",
              wraps={"deregister_memory": _keep_refs}),
    SeededBug("callback-leaves-overlap", "CACHE-04", "the callback releases only entries wholly inside "
              "the range; a partly overlapping entry stays cached over freed pages",
              patches={"callback_hits": lambda ops, sl, addr, size: ops.and_(
                  sl.length > 0, addr <= sl.addr, sl.addr + sl.length <= addr + size)}),
    SeededBug("error-state-ignored", "CONN-02", "transfers go on over a connection in the error state",
              patches={"connection_checks": _closed_only}),
    SeededBug("one-byte-too-many", "RDMA-06", "an RDMA write copies one byte more than asked",
              wraps={"rdma_write": _slipped(more=1)}),
    SeededBug("close-keeps-cache", "CACHE-06", "closing releases live registrations but keeps cached ones",
              patches={"released_at_close": lambda ops, sl, conn: ops.and_(sl.used, sl.refs > 0, sl.sock == conn)}),
    SeededBug("handle-on-any-socket", "REG-06", "a handle is accepted on every socket",
              patches={"live_registration": lambda ops, sl, kind, sock, rid: ops.and_(
                  sl.used, sl.refs > 0, sl.kind == kind, sl.rid == rid)}),
    SeededBug("no-range-check", "REG-04", "registration never checks that the buffer is mapped",
              patches={"range_mapped": lambda ops, cfg, host, addr, length: True}),
    SeededBug("id-reused", "REG-07", "a new registration does not advance the id counter",
              wraps={"register_memory": _stale_id_counter}),
    SeededBug("send-no-length-check", "XFER-03", "WSPSend delivers a message longer than the posted receive",
              patches={"fits_receive": lambda ops, ep, n: True}),
    SeededBug("send-sources-need-write", "ACC-03", "WSPSend checks its sources for MEM_WRITE, as a "
              "receive's sink, instead of MEM_READ",
              wraps={"send": _while(grants=_sources_checked_as_sinks)}),
    SeededBug("send-one-byte-later", "XFER-03", "WSPSend copies into the receive one byte after its start",
              wraps={"send": _slipped(later=1)}),
    SeededBug("grants-by-comparison", "ACC-02", "grants() compares flags as numbers (flags >= need), "
              "so MEM_WRITE grants MEM_READ",
              patches={"grants": lambda ops, flags, need: flags >= need}),
    SeededBug("contains-one-past", "RDMA-04", "contains() admits a buffer ending one byte past its registration",
              patches={"contains": lambda ops, oa, ol, addr, length: ops.and_(oa <= addr,
                                                                               addr + length <= oa + ol + 1)}),
    SeededBug("total-drops-last-buffer", "RDMA-05", "total_length() leaves out the last buffer",
              patches={"total_length": lambda sges: sum((g.length for g in sges[:-1]), 0)}),
    SeededBug("range-checks-first-page", "MEM-02", "range_mapped() checks only the page of the first byte",
              patches={"range_mapped": lambda ops, cfg, host, addr, length: ops.and_(
                  addr >= 0, addr + length <= cfg.memsize, ops.forall_at(host.mapped, lambda p, m: ops.implies(
                      ops.and_(p * cfg.page_size <= addr, addr < (p + 1) * cfg.page_size), m)))}),
    SeededBug("valid-flags-admits-zero", "ACC-01", "valid_flags() admits flags 0",
              patches={"valid_flags": lambda ops, flags: ops.and_(flags >= 0, flags <= 3)}),
)

BY_NAME = {b.name: b for b in SEEDED_BUGS}
