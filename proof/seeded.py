"""Deliberately wrong versions of the model, to show the prover can fail.

Each seeded bug breaks one clause, the way real providers and caches get it
wrong: by replacing one helper of model/transitions.py for the duration of a
``with`` block, or by wrapping one transition. The invariants and step
properties are never touched (model/invariants.py keeps its own references
to the correct helpers, bound when it is imported, which this module makes
sure happens first), so each bug must surface as a counterexample.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import attrs

import sanspi.model.invariants  # noqa: F401  bind the correct helpers before any patch
import sanspi.model.transitions as T
from sanspi.model import reasons as R
from sanspi.model.constants import CLOSED, WSAENOTCONN
from sanspi.model.ops import Ops


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
        saved = {name: getattr(T, name) for name in self.patches}
        try:
            for name, fn in self.patches.items():
                setattr(T, name, fn)
            table = dict(T.TRANSITIONS)
            for name, wrap in self.wraps.items():
                table[name] = attrs.evolve(table[name], fn=wrap(table[name].fn))
            yield table
        finally:
            for name, fn in saved.items():
                setattr(T, name, fn)


def _keep_refs(fn):
    """A deregistration that reports success but drops no reference."""
    def buggy(cfg, s, a, ops):
        step = fn(cfg, s, a, ops)
        hosts = []
        for before, after in zip(s.hosts, step.next.hosts):
            slots = tuple(ops.ite(ops.and_(p.used, q.used, p.rid == q.rid), attrs.evolve(q, refs=p.refs), q)
                          for p, q in zip(before.slots, after.slots))
            hosts.append(attrs.evolve(after, slots=slots))
        return attrs.evolve(step, next=attrs.evolve(step.next, hosts=tuple(hosts)))
    return buggy


def _stale_id_counter(fn):
    """A registration that hands out an id without advancing the counter."""
    def buggy(cfg, s, a, ops):
        step = fn(cfg, s, a, ops)
        return attrs.evolve(step, next=attrs.evolve(step.next, next_id=s.next_id))
    return buggy


class _OneByteMore:
    """ops whose copies move one byte too many (a classic length slip)."""

    def __init__(self, ops: Ops):
        self._ops = ops

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ops, name)

    def mem_copy(self, dst, dst_at, src, src_at, n):
        return self._ops.mem_copy(dst, dst_at, src, src_at, n + 1)


def _one_byte_more(fn):
    return lambda cfg, s, a, ops: fn(cfg, s, a, _OneByteMore(ops))


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
              wraps={"rdma_write": _one_byte_more}),
    SeededBug("close-keeps-cache", "CACHE-06", "closing releases live registrations but keeps cached ones",
              patches={"released_at_close": lambda ops, sl, conn: ops.and_(sl.used, sl.refs > 0, sl.sock == conn)}),
    SeededBug("handle-on-any-socket", "REG-06", "a handle is accepted on every socket",
              patches={"live_registration": lambda ops, sl, kind, sock, rid: ops.and_(
                  sl.used, sl.refs > 0, sl.kind == kind, sl.rid == rid)}),
    SeededBug("no-range-check", "REG-04", "registration never checks that the buffer is mapped",
              patches={"range_mapped": lambda ops, cfg, host, addr, length: True}),
    SeededBug("id-reused", "REG-07", "a new registration does not advance the id counter",
              wraps={"register_memory": _stale_id_counter}),
)

BY_NAME = {b.name: b for b in SEEDED_BUGS}
