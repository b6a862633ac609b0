"""The expression layer the transitions are written in (see model/README.md).

A transition never branches on state with ``if``, ``and``, ``or`` or ``not``:
it asks an ``ops`` object, so that the same function runs on concrete Python
values (``CONCRETE``, here) and builds z3 terms (``sanspi.proof.symbolic``).
Arithmetic and comparisons (``+ - < <= ==``) are written directly: Python
ints and z3 terms both overload them.

Every operation is total: an out-of-range index or a negative length gives a
defined value instead of an exception, because ``ite`` evaluates both of its
branches and the branch not taken may hold nonsense arguments.

A state's collections (a host's registration table, its endpoints, its
pages) are only ever used through the collection operations (``exists``,
``forall``, ``forall_at``, ``find``, ``map``, ``map_at``, ``select``,
``update``), never iterated in Python: the concrete ops loop, the bounded z3
ops unroll over a fixed length, and ``sanspi.proof.unbounded`` states them
with z3 arrays, lambdas and quantifiers for a table of any size. A call's
buffers are the call's shape, not a collection of the state: a transition
may iterate them.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence


class Ops(Protocol):
    """What a transition may use to decide and combine values."""

    symbolic: bool

    def ite(self, cond: Any, then: Any, other: Any) -> Any: ...
    def and_(self, *xs: Any) -> Any: ...
    def or_(self, *xs: Any) -> Any: ...
    def not_(self, x: Any) -> Any: ...
    def implies(self, a: Any, b: Any) -> Any: ...
    def select(self, seq: Sequence[Any], index: Any, default: Any) -> Any: ...
    def update(self, seq: Sequence[Any], index: Any, value: Any) -> tuple: ...
    def exists(self, seq: Any, pred: Callable[[Any], Any]) -> Any: ...
    def forall(self, seq: Any, pred: Callable[[Any], Any]) -> Any: ...
    def forall_at(self, seq: Any, pred: Callable[[Any, Any], Any]) -> Any: ...
    def find(self, seq: Any, pred: Callable[[Any], Any]) -> tuple[Any, Any]: ...
    def map(self, seq: Any, fn: Callable[[Any], Any]) -> Any: ...
    def map_at(self, seq: Any, fn: Callable[[Any, Any], Any]) -> Any: ...
    def mem_get(self, mem: Any, at: Any) -> Any: ...
    def mem_copy(self, dst: Any, dst_at: Any, src: Any, src_at: Any, n: Any) -> Any: ...
    def mem_fill(self, mem: Any, at: Any, n: Any, seed: Any) -> Any: ...
    def mem_zero(self, mem: Any, at: Any, n: Any) -> Any: ...


def first(ops: Ops, cases: Sequence[tuple[Any, Any]], default: Any) -> Any:
    """The value of the first case whose condition holds, else ``default``.

    This is how a function's checks are written in their documented order
    (the first failing check names the error).
    """
    result = default
    for cond, value in reversed(cases):
        result = ops.ite(cond, value, result)
    return result


def decide(ops: Ops, checks: Sequence[tuple[Any, Any, Any]], ok: Any, ok_why: Any) -> tuple[Any, Any]:
    """(status, why) of a function's ordered checks ``(condition, code,
    reason)``: the first failing check gives both; if none fails, ``ok`` and
    ``ok_why`` (model/reasons.py)."""
    status = first(ops, [(c, code) for c, code, _ in checks], ok)
    why = first(ops, [(c, reason) for c, _, reason in checks], ok_why)
    return status, why


def pattern_byte(seed: int, i: int) -> int:
    """Byte i of the application's fill pattern with ``seed`` (MEM-03).

    Position-dependent so that a shifted or truncated copy is visible.
    """
    return (seed + i) % 256


class ConcreteOps:
    """Plain Python values: bools, ints, tuples, and ``bytes`` for memory."""

    symbolic = False

    @staticmethod
    def ite(cond, then, other):
        return then if cond else other

    @staticmethod
    def and_(*xs):
        return all(xs)

    @staticmethod
    def or_(*xs):
        return any(xs)

    @staticmethod
    def not_(x):
        return not x

    @staticmethod
    def implies(a, b):
        return (not a) or b

    @staticmethod
    def select(seq, index, default):
        return seq[index] if 0 <= index < len(seq) else default

    @staticmethod
    def update(seq, index, value):
        if not 0 <= index < len(seq):
            return tuple(seq)
        return tuple(seq[:index]) + (value,) + tuple(seq[index + 1 :])

    # --- collections: plain loops, stopping as soon as the answer is known

    @staticmethod
    def exists(seq, pred):
        for x in seq:
            if pred(x):
                return True
        return False

    @staticmethod
    def forall(seq, pred):
        for x in seq:
            if not pred(x):
                return False
        return True

    @staticmethod
    def forall_at(seq, pred):
        for i, x in enumerate(seq):
            if not pred(i, x):
                return False
        return True

    @staticmethod
    def find(seq, pred):
        for i, x in enumerate(seq):
            if pred(x):
                return True, i
        return False, 0

    @staticmethod
    def map(seq, fn):
        return tuple(fn(x) for x in seq)

    @staticmethod
    def map_at(seq, fn):
        return tuple(fn(i, x) for i, x in enumerate(seq))

    @staticmethod
    def mem_get(mem, at):
        return mem[at] if 0 <= at < len(mem) else 0

    @staticmethod
    def mem_copy(dst, dst_at, src, src_at, n):
        # Out-of-bounds copies leave dst as it is; guards never take them.
        if n <= 0 or dst_at < 0 or src_at < 0 or dst_at + n > len(dst) or src_at + n > len(src):
            return dst
        return dst[:dst_at] + src[src_at : src_at + n] + dst[dst_at + n :]

    @staticmethod
    def mem_fill(mem, at, n, seed):
        if n <= 0 or at < 0 or at + n > len(mem):
            return mem
        fill = bytes(pattern_byte(seed, i) for i in range(n))
        return mem[:at] + fill + mem[at + n :]

    @staticmethod
    def mem_zero(mem, at, n):
        if n <= 0 or at < 0 or at + n > len(mem):
            return mem
        return mem[:at] + bytes(n) + mem[at + n :]


CONCRETE = ConcreteOps()
