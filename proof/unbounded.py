"""The third backend of ``ops``: a state's collections of any size.

The bounded proof (``proof/symbolic.py``) encodes a registration table as a
tuple of a fixed length and unrolls every collection operation over it. Here
a host's registrations, endpoints and pages are ``Table``s: a symbolic size
and one z3 array per field, so a proof over them holds for every number of
registrations, connections and pages at once. The same transition functions
and properties run over them, with ``QuantOps``:

* ``exists`` / ``forall`` / ``forall_at`` are z3 quantifiers over the
  indices below the table's size;
* ``map`` / ``map_at`` build each field's new array as a ``z3.Lambda``;
* ``select`` reads one element (the default outside the table), ``update``
  stores one;
* ``find`` (the first element with a property) names its answer with two
  fresh constants, ``found`` and ``first``, defined by universally
  quantified axioms that the prover adds: ``found`` holds exactly when some
  element has the property, ``first`` is then the least such index, else 0.
  This is a definition, not an assumption: for every state exactly one
  value of each satisfies it, the one the concrete loop computes.

Nothing else is bounded by the state: ids, addresses, lengths, offsets and
bytes were already unbounded integers. What stays fixed is the call's shape
(the calling host, and its buffer count from 0 to max_sge + 1, since
max_sge is the provider's capability), the two hosts, the page size and the
provider's capabilities.

z3 proves these queries quickly, but seldom builds a model of quantified
assumptions over arithmetic, so a check it does not prove has its
counterexample sought with the bounded encoding at small sizes
(``SMALL_SIZES``; proof/induction.py): a concrete ``Config``, pre-state and
step that the concrete model replays.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
import z3

from sanspi.model.state import Config, Endpoint, Host, Slot, State, init_state
from sanspi.proof import symbolic
from sanspi.proof.symbolic import Z3Ops, _index, _lift

#: The sizes (pages, registrations a host and connections alike) a
#: counterexample is sought at, smallest first.
SMALL_SIZES = (1, 2, 3)


@attrs.frozen
class Table:
    """A collection of ``size`` elements: element i is ``kind`` built from
    ``cols[f][i]`` for each field f, or ``cols[0][i]`` when ``kind`` is None
    (a page's mapped flag)."""

    size: Any
    cols: tuple
    kind: Any = None

    def at(self, i: Any) -> Any:
        if self.kind is None:
            return z3.Select(self.cols[0], i)
        return self.kind(**{f.name: z3.Select(c, i) for f, c in zip(attrs.fields(self.kind), self.cols)})

    def has(self, i: Any) -> Any:
        return z3.And(i >= 0, i < self.size)


def _sort(default: Any) -> Any:
    return z3.BoolSort() if isinstance(default, bool) else z3.IntSort()


def _as_bool(x: Any) -> Any:
    return z3.BoolVal(x) if isinstance(x, bool) else x


def _columns(kind: Any, value: Any) -> tuple:
    """The field values of one element, in the table's column order."""
    if kind is None:
        return (value,)
    return tuple(getattr(value, f.name) for f in attrs.fields(kind))


class QuantOps(Z3Ops):
    """Z3Ops whose collection operations also take ``Table``s. ``axioms``
    collects the definitions of ``find``'s answers; the prover asserts them."""

    def __init__(self, memsize: Any):
        super().__init__(memsize)
        self.axioms: list[Any] = []
        self._binders = 0  # how many quantifiers or lambdas enclose the term being built

    def _var(self) -> Any:
        return z3.Int(f"j!{next(_index)}")

    def _inside(self, fn: Callable, *xs: Any) -> Any:
        """fn(*xs) built under a binder (its bound variable is among xs)."""
        self._binders += 1
        try:
            return fn(*xs)
        finally:
            self._binders -= 1

    def exists(self, seq, pred):
        if not isinstance(seq, Table):
            return super().exists(seq, pred)
        j = self._var()
        return z3.Exists([j], z3.And(seq.has(j), _as_bool(self._inside(pred, seq.at(j)))))

    def forall_at(self, seq, pred):
        if not isinstance(seq, Table):
            return super().forall_at(seq, pred)
        j = self._var()
        return z3.ForAll([j], z3.Implies(seq.has(j), _as_bool(self._inside(pred, j, seq.at(j)))))

    def find(self, seq, pred):
        if not isinstance(seq, Table):
            return super().find(seq, pred)
        if self._binders:
            raise ValueError("find() under a quantifier: its answer would depend on the bound variable")
        n = next(_index)
        found, first = z3.Bool(f"found!{n}"), z3.Int(f"first!{n}")
        j = self._var()
        self.axioms += [
            z3.Implies(found, z3.And(seq.has(first), _as_bool(pred(seq.at(first))))),
            z3.Implies(z3.Not(found), first == 0),
            z3.ForAll([j], z3.Implies(z3.And(seq.has(j), _as_bool(self._inside(pred, seq.at(j)))),
                                      z3.And(found, first <= j))),
        ]
        return found, first

    def map_at(self, seq, fn):
        if not isinstance(seq, Table):
            return super().map_at(seq, fn)
        j = self._var()
        out = self._inside(fn, j, seq.at(j))
        cols = tuple(z3.Lambda([j], _lift(v)) for v in _columns(seq.kind, out))
        return Table(seq.size, cols, seq.kind)

    def select(self, seq, index, default):
        if not isinstance(seq, Table):
            return super().select(seq, index, default)
        return self.ite(seq.has(index), seq.at(index), default)

    def update(self, seq, index, value):
        if not isinstance(seq, Table):
            return super().update(seq, index, value)
        # outside the table the store is never read: every read checks the size
        cols = tuple(z3.Store(c, index, _lift(v)) for c, v in zip(seq.cols, _columns(seq.kind, value)))
        return Table(seq.size, cols, seq.kind)


# --- states of any size --------------------------------------------------------


def sized(cfg: Config) -> Config:
    """``cfg`` with its numbers of pages, registrations a host and
    connections left to z3; capabilities and the page size stay as given."""
    return attrs.evolve(cfg, pages=z3.Int("pages"), slots=z3.Int("slots"), sockets=z3.Int("sockets"))


def sizes(cfg: Config) -> list[Any]:
    return [cfg.pages, cfg.slots, cfg.sockets]


def fresh_table(kind: Any, size: Any, name: str) -> Table:
    if kind is None:
        return Table(size, (z3.Array(name, z3.IntSort(), z3.BoolSort()),))
    return Table(size, tuple(z3.Array(f"{name}.{f.name}", z3.IntSort(), _sort(f.default))
                             for f in attrs.fields(kind)), kind)


def fresh_state(cfg: Config, tag: str) -> State:
    return symbolic.fresh_state(cfg, tag, fresh_table)


def _constant(size: Any, kind: Any, element: Any) -> Table:
    return Table(size, tuple(z3.K(z3.IntSort(), _lift(v)) for v in _columns(kind, element)), kind)


def init(cfg: Config) -> State:
    """Init at every size, read off ``init_state``: it fills each table with
    one element (checked here), which becomes a constant array."""
    one = init_state(Config(pages=2, slots=2, sockets=2, page_size=1))
    hosts = []
    for host in one.hosts:
        for seq in (host.mapped, host.slots, host.eps):
            assert len(set(seq)) == 1, "init_state fills a table with more than one value"
        assert set(host.mem) == {0}, "init_state's memory is not all zeros"
        hosts.append(Host(startups=host.startups, mapped=_constant(cfg.pages, None, host.mapped[0]),
                          slots=_constant(cfg.slots, Slot, host.slots[0]),
                          eps=_constant(cfg.sockets, Endpoint, host.eps[0]),
                          mem=z3.K(z3.IntSort(), z3.IntVal(0))))
    return State(hosts=tuple(hosts), next_id=one.next_id)
