"""The unbounded backend (proof/unbounded.py) is the same definition once
more, over tables of any size: concrete runs pinned into its encoding must
be admitted by it (so its definitions are not contradictory and the proof
not vacuous) and must force exactly what the concrete run computes."""

from __future__ import annotations

import attrs
import pytest
import z3

from sanspi.model.ops import CONCRETE
from sanspi.model.state import Slot
from sanspi.model.transitions import TRANSITIONS
from sanspi.proof import unbounded
from sanspi.proof.symbolic import lift_memory

from .test_encoding_agrees import CFG, Encodings, drive, leaves, shape_of

SIZED = unbounded.sized(CFG)


class CountingQuantOps(unbounded.QuantOps):
    """QuantOps that counts the operations it states over tables."""

    def __init__(self, memsize):
        super().__init__(memsize)
        self.on_tables = 0

    def __getattribute__(self, name):
        attr = super().__getattribute__(name)
        if name in ("exists", "forall", "forall_at", "find", "map", "map_at", "select", "update"):
            def counted(seq, *rest):
                if isinstance(seq, unbounded.Table):
                    self.on_tables += 1
                return attr(seq, *rest)
            return counted
        return attr


encoding = Encodings(SIZED, CountingQuantOps, unbounded.fresh_state)


def _val(x):
    return z3.BoolVal(x) if isinstance(x, bool) else z3.IntVal(x)


def _column(table: unbounded.Table, k: int, values: tuple) -> list:
    """The values of column k of a concrete table."""
    if table.kind is None:
        return list(values)
    name = attrs.fields(table.kind)[k].name
    return [getattr(v, name) for v in values]


def pins(sym, con) -> list:
    """Equations fixing a symbolic pre-state to a concrete one."""
    out = [sym.next_id == con.next_id]
    for hs, hc in zip(sym.hosts, con.hosts):
        out.append(hs.startups == hc.startups)
        for table, values in ((hs.mapped, hc.mapped), (hs.slots, hc.slots), (hs.eps, hc.eps)):
            for k, col in enumerate(table.cols):
                arr = z3.K(z3.IntSort(), z3.BoolVal(False) if col.range() == z3.BoolSort() else z3.IntVal(0))
                for i, v in enumerate(_column(table, k, values)):
                    arr = z3.Store(arr, i, _val(v))
                out.append(col == arr)
        out.append(hs.mem == lift_memory(hc.mem))
    return out


def differences(sym, con) -> list:
    """Ways a symbolic next state could differ from the concrete one."""
    k = z3.Int("k")
    out = [sym.next_id != con.next_id]
    for hs, hc in zip(sym.hosts, con.hosts):
        out.append(hs.startups != hc.startups)
        for table, values in ((hs.mapped, hc.mapped), (hs.slots, hc.slots), (hs.eps, hc.eps)):
            out.append(table.size != len(values))
            for col_k, col in enumerate(table.cols):
                out += [z3.Select(col, i) != _val(v) for i, v in enumerate(_column(table, col_k, values))]
        out.append(z3.Select(hs.mem, k) != z3.Select(lift_memory(hc.mem), k))
    return out


def compare(m, name, args):
    enc = encoding(name, shape_of(args))
    concrete = TRANSITIONS[name].fn(CFG, m.state, args, CONCRETE)
    solver = z3.Solver()
    solver.set("timeout", 30_000)
    solver.add(*enc.ops.axioms, SIZED.pages == CFG.pages, SIZED.slots == CFG.slots, SIZED.sockets == CFG.sockets)
    solver.add(*pins(enc.state, m.state))
    solver.add(*[term == _val(value) for (_, term), (_, value) in zip(leaves(enc.args), leaves(args), strict=True)
                 if isinstance(term, z3.ExprRef)])
    assert solver.check() == z3.sat, f"the unbounded encoding of {name} admits no state like this one"
    step = enc.step
    diffs = [z3.BoolVal(step.enabled) != concrete.enabled if isinstance(step.enabled, bool)
             else step.enabled != bool(concrete.enabled),
             _as_int(step.status) != concrete.status, _as_int(step.result) != concrete.result]
    diffs += differences(step.next, concrete.next)
    verdict = solver.check(z3.Or(*diffs))
    assert verdict == z3.unsat, f"{name}({args}): the unbounded encoding allows another outcome ({verdict})"
    return concrete


def _as_int(x):
    return z3.IntVal(x) if isinstance(x, int) else x


def test_unbounded_encoding_admits_and_agrees_with_concrete_runs():
    drive(compare, max_examples=4)
    # the encodings were built over tables: every transition that touches a
    # collection of the state did so through a table operation
    untouched = sorted({name for (name, _), enc in encoding.built.items() if enc.ops.on_tables == 0})
    assert untouched == ["get_extension", "startup_ex"]


def test_find_under_a_quantifier_is_refused():
    ops = unbounded.QuantOps(SIZED.memsize)
    s = unbounded.fresh_state(SIZED, "s")
    with pytest.raises(ValueError, match="under a quantifier"):
        ops.forall(s.hosts[0].slots, lambda sl: ops.find(s.hosts[1].slots, lambda t: t.rid == sl.rid)[0])


def test_init_fills_every_table_with_one_value():
    s0 = unbounded.init(SIZED)
    assert s0.hosts[0].slots.kind is Slot
    solver = z3.Solver()
    i = z3.Int("i")
    # every slot of Init is the empty slot, at any index and any size
    assert solver.check(z3.Select(s0.hosts[0].slots.cols[0], i)) == z3.unsat
