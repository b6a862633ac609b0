"""z3 terms for the model: the symbolic ``ops``, fresh states and arguments,
and the way back from a z3 model to concrete values.

Nothing here restates a transition: the prover runs the functions in
``sanspi.model.transitions`` with ``Z3Ops`` and gets their z3 encoding.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

import attrs
import z3

from sanspi.model.state import HOSTS, Config, Endpoint, Host, Slot, State
from sanspi.model.transitions import Sge

MEM_SORT = z3.ArraySort(z3.IntSort(), z3.IntSort())
_index = itertools.count()


def _lift(x: Any) -> Any:
    if isinstance(x, bool):
        return z3.BoolVal(x)
    if isinstance(x, int):
        return z3.IntVal(x)
    if isinstance(x, (bytes, bytearray)):
        return lift_memory(x)
    return x


def lift_memory(mem: bytes) -> Any:
    arr = z3.K(z3.IntSort(), z3.IntVal(0))
    for i, b in enumerate(mem):
        if b:
            arr = z3.Store(arr, i, b)
    return arr


def _is_z3(x: Any) -> bool:
    return isinstance(x, z3.ExprRef)


class Z3Ops:
    """The ops of model/ops.py over z3 terms. Python constants stay Python
    values as long as they can, so conditions known at encoding time (the
    provider's capabilities, a call's buffer count) cost the solver nothing."""

    symbolic = True

    def __init__(self, memsize: int):
        self.memsize = memsize

    def ite(self, cond, then, other):
        if isinstance(cond, bool):
            return then if cond else other
        if then is other:
            return then
        if attrs.has(type(then)) and type(then) is type(other):
            return attrs.evolve(then, **{
                f.name: self.ite(cond, getattr(then, f.name), getattr(other, f.name))
                for f in attrs.fields(type(then)) if f.init
            })
        if isinstance(then, tuple) and isinstance(other, tuple) and len(then) == len(other):
            return tuple(self.ite(cond, x, y) for x, y in zip(then, other))
        if not _is_z3(then) and not _is_z3(other) and then == other and type(then) is type(other):
            return then
        a, b = _lift(then), _lift(other)
        if a.eq(b):
            return a
        return z3.If(cond, a, b)

    def and_(self, *xs):
        if any(x is False for x in xs):
            return False
        terms = [x for x in xs if x is not True]
        if not terms:
            return True
        return terms[0] if len(terms) == 1 else z3.And(*terms)

    def or_(self, *xs):
        if any(x is True for x in xs):
            return True
        terms = [x for x in xs if x is not False]
        if not terms:
            return False
        return terms[0] if len(terms) == 1 else z3.Or(*terms)

    def not_(self, x):
        return (not x) if isinstance(x, bool) else z3.Not(x)

    def implies(self, a, b):
        return self.or_(self.not_(a), b)

    def select(self, seq: Sequence[Any], index, default):
        if isinstance(index, int):
            return seq[index] if 0 <= index < len(seq) else default
        result = default
        for k in reversed(range(len(seq))):
            result = self.ite(index == k, seq[k], result)
        return result

    def update(self, seq, index, value):
        if isinstance(index, int):
            if not 0 <= index < len(seq):
                return tuple(seq)
            return tuple(seq[:index]) + (value,) + tuple(seq[index + 1:])
        return tuple(self.ite(index == k, value, x) for k, x in enumerate(seq))

    # --- collections of a fixed length: unrolled

    def exists(self, seq, pred):
        return self.or_(*[pred(x) for x in seq])

    def forall(self, seq, pred):
        return self.forall_at(seq, lambda _, x: pred(x))

    def forall_at(self, seq, pred):
        return self.and_(*[pred(i, x) for i, x in enumerate(seq)])

    def find(self, seq, pred):
        """(some element satisfies pred, the index of the first one, 0 if none)."""
        conds = [pred(x) for x in seq]
        index = 0
        for i in reversed(range(len(conds))):
            index = self.ite(conds[i], i, index)
        return self.or_(*conds), index

    def map(self, seq, fn):
        return self.map_at(seq, lambda _, x: fn(x))

    def map_at(self, seq, fn):
        return tuple(fn(i, x) for i, x in enumerate(seq))

    def mem_get(self, mem, at):
        return z3.Select(_lift(mem), at)

    def _bounded(self, at, n):
        return z3.And(_lift(n) > 0, _lift(at) >= 0, _lift(at) + n <= self.memsize)

    def mem_copy(self, dst, dst_at, src, src_at, n):
        i = z3.Int(f"i!{next(_index)}")
        ok = z3.And(self._bounded(dst_at, n), self._bounded(src_at, n))
        body = z3.If(z3.And(ok, dst_at <= i, i < dst_at + n), z3.Select(_lift(src), i - dst_at + src_at),
                     z3.Select(_lift(dst), i))
        return z3.Lambda([i], body)

    def _overwrite(self, mem, at, n, byte):
        """``mem`` with [at, at+n) replaced by ``byte(i)`` (unchanged when out of bounds)."""
        i = z3.Int(f"i!{next(_index)}")
        inside = z3.And(self._bounded(at, n), at <= i, i < at + n)
        return z3.Lambda([i], z3.If(inside, byte(i), z3.Select(_lift(mem), i)))

    def mem_fill(self, mem, at, n, seed):
        # byte k of the fill is model.ops.pattern_byte(seed, k) = (seed + k) % 256
        return self._overwrite(mem, at, n, lambda i: (seed + i - at) % 256)

    def mem_zero(self, mem, at, n):
        return self._overwrite(mem, at, n, lambda i: z3.IntVal(0))


# --- fresh symbolic values ---------------------------------------------------


def _fresh_record(cls: type, prefix: str) -> Any:
    values = {}
    for f in attrs.fields(cls):
        name = f"{prefix}.{f.name}"
        values[f.name] = z3.Bool(name) if isinstance(f.default, bool) else z3.Int(name)
    return cls(**values)


def fresh_tuple(kind: type | None, size: int, name: str) -> tuple:
    """``size`` fresh elements: records of ``kind``, or booleans if None."""
    return tuple(z3.Bool(f"{name}{i}") if kind is None else _fresh_record(kind, f"{name}{i}") for i in range(size))


def fresh_state(cfg: Config, tag: str, collection: Callable[[Any, Any, str], Any] = fresh_tuple) -> State:
    """A state of fresh z3 constants; ``collection(kind, size, name)`` makes
    a host's pages (kind None), registrations and endpoints."""
    hosts = []
    for h in range(HOSTS):
        p = f"{tag}.h{h}"
        hosts.append(Host(
            startups=z3.Int(f"{p}.startups"),
            mapped=collection(None, cfg.pages, f"{p}.mapped"),
            slots=collection(Slot, cfg.slots, f"{p}.slot"),
            eps=collection(Endpoint, cfg.sockets, f"{p}.ep"),
            mem=z3.Const(f"{p}.mem", MEM_SORT),
        ))
    return State(hosts=tuple(hosts), next_id=z3.Int(f"{tag}.next_id"))


def lift_state(s: State) -> State:
    """A concrete state as z3 terms (Python ints and bools stay as they are)."""
    return attrs.evolve(s, hosts=tuple(attrs.evolve(h, mem=lift_memory(h.mem)) for h in s.hosts))


@attrs.frozen
class Shape:
    """The part of a call's arguments that is fixed per encoding: which host
    calls, and how many buffers it passes. Every other argument is symbolic."""

    host: int | None = None
    nsges: int | None = None

    def label(self) -> str:
        parts = []
        if self.host is not None:
            parts.append(f"host={self.host}")
        if self.nsges is not None:
            parts.append(f"buffers={self.nsges}")
        return ", ".join(parts)


def fresh_args(args_cls: type, shape: Shape, tag: str) -> Any:
    values = {}
    for f in attrs.fields(args_cls):
        name = f"{tag}.{f.name}"
        if f.name == "host" and shape.host is not None:
            values[f.name] = shape.host
        elif f.name == "sges":
            values[f.name] = tuple(_fresh_record(Sge, f"{name}{k}") for k in range(shape.nsges or 0))
        elif isinstance(f.default, bool):
            values[f.name] = z3.Bool(name)
        else:
            values[f.name] = z3.Int(name)
    return args_cls(**values)


def shapes(args_cls: type, cfg: Config) -> list[Shape]:
    names = {f.name for f in attrs.fields(args_cls)}
    hosts = list(range(HOSTS)) if "host" in names else [None]
    counts = list(range(0, cfg.max_sge + 2)) if "sges" in names else [None]
    return [Shape(h, n) for h in hosts for n in counts]


# --- equality and concrete values from a model ------------------------------


def equal(a: Any, b: Any) -> Any:
    """Field-by-field equality of two states (or records, tuples, terms)."""
    if attrs.has(type(a)):
        return z3.And(*[equal(getattr(a, f.name), getattr(b, f.name)) for f in attrs.fields(type(a))])
    if isinstance(a, tuple):
        return z3.And(*[equal(x, y) for x, y in zip(a, b)])
    return _lift(a) == _lift(b)


def concrete(model: z3.ModelRef, x: Any, memsize: int) -> Any:
    """The value of a symbolic state, record or term in ``model``."""
    if attrs.has(type(x)):
        return attrs.evolve(x, **{f.name: concrete(model, getattr(x, f.name), memsize)
                                  for f in attrs.fields(type(x)) if f.init})
    if isinstance(x, tuple):
        return tuple(concrete(model, v, memsize) for v in x)
    if isinstance(x, (bool, int, bytes)):
        return x
    if x.sort() == MEM_SORT:
        return decode_memory(model, x, memsize)
    v = model.eval(x, model_completion=True)
    return z3.is_true(v) if x.sort() == z3.BoolSort() else v.as_long()


def decode_memory(model: z3.ModelRef, arr: Any, memsize: int) -> bytes:
    """The bytes of a memory array in ``model``: read off its interpretation
    (a Store chain over a constant, or a function table), else byte by byte."""
    value = model.eval(arr, model_completion=True)
    cells: dict[int, int] = {}
    default = None
    while True:
        if z3.is_store(value):
            index, byte = value.arg(1), value.arg(2)
            if z3.is_int_value(index) and z3.is_int_value(byte):
                cells.setdefault(index.as_long(), byte.as_long())
                value = value.arg(0)
                continue
        elif z3.is_const_array(value) and z3.is_int_value(value.arg(0)):
            default = value.arg(0).as_long()
        elif z3.is_as_array(value):
            table = model[z3.get_as_array_func(value)]
            entries = table.as_list()
            if all(z3.is_int_value(e[0]) and z3.is_int_value(e[1]) for e in entries[:-1]) and z3.is_int_value(entries[-1]):
                for index, byte in entries[:-1]:
                    cells.setdefault(index.as_long(), byte.as_long())
                default = entries[-1].as_long()
        break
    if default is None:  # an interpretation we cannot read: ask byte by byte
        return bytes(model.eval(z3.Select(arr, i), model_completion=True).as_long() % 256 for i in range(memsize))
    return bytes(cells.get(i, default) % 256 for i in range(memsize))
