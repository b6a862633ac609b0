"""The z3 encoding and the concrete model are one definition run two ways:
on concrete states and arguments, the z3 terms the transitions build must
simplify to exactly what the concrete run computes. A drift between the two
``ops`` would show here."""

from __future__ import annotations

import attrs
import z3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sanspi.model.machine import Model
from sanspi.model.ops import CONCRETE
from sanspi.model.state import Config
from sanspi.model.transitions import TRANSITIONS, RdmaArgs, Sge
from sanspi.proof.symbolic import MEM_SORT, Z3Ops, lift_state

from ..model.test_random_sequences import draw_args

CFG = Config(pages=2, page_size=32, slots=3, sockets=2, max_sge=2)


def value(term):
    """A concrete or simplified z3 value as plain Python (memories as bytes)."""
    if isinstance(term, (bool, int, bytes)):
        return term
    if term.sort() == MEM_SORT:
        return bytes(z3.simplify(z3.Select(term, i)).as_long() for i in range(CFG.memsize))
    term = z3.simplify(term)
    return z3.is_true(term) if z3.is_bool(term) else term.as_long()


def flatten(x, path="s"):
    if attrs.has(type(x)):
        for f in attrs.fields(type(x)):
            yield from flatten(getattr(x, f.name), f"{path}.{f.name}")
    elif isinstance(x, tuple):
        for i, v in enumerate(x):
            yield from flatten(v, f"{path}[{i}]")
    else:
        yield path, value(x)


def set_up() -> Model:
    m = Model(CFG, check=False)
    for h in (0, 1):
        m.call("startup_ex", host=h, major=2, minor=2)
        m.call("alloc", host=h, page=0, npages=2)
    for conn in range(CFG.sockets):
        m.call("connect", conn=conn)
    # registrations that let transfers succeed, over memory that is not all zeros
    for h in (0, 1):
        m.call("app_write", host=h, addr=0, length=CFG.memsize, seed=17 * h + 1)
        m.call("register_memory", host=h, sock=0, addr=0, length=32, flags=3)
        m.call("register_rdma_memory", host=h, sock=0, addr=32, length=32, flags=3, desc_len=CFG.descriptor_size)
    return m


@st.composite
def transfer(draw, m: Model, name: str):
    """RDMA arguments that name the set-up registrations, mostly in bounds."""
    host = draw(st.integers(0, 1))
    handle = next((sl.rid for sl in m.state.hosts[host].slots if sl.used and sl.kind == 1), 0)
    desc = next((sl.rid for sl in m.state.hosts[1 - host].slots if sl.used and sl.kind == 2), 0)
    addr = draw(st.integers(0, 31))
    length = draw(st.integers(1, 32 - addr))
    offset = draw(st.integers(0, 32 - length) | st.integers(0, 40))
    return RdmaArgs(host, 0, (Sge(handle, addr, length),), desc, offset, 0)


def compare(m: Model, name: str, args, ops: Z3Ops):
    t = TRANSITIONS[name]
    concrete = t.fn(CFG, m.state, args, CONCRETE)
    symbolic = t.fn(CFG, lift_state(m.state), args, ops)
    assert value(symbolic.enabled) == bool(concrete.enabled)
    if concrete.enabled:
        assert (value(symbolic.status), value(symbolic.result)) == (concrete.status, concrete.result)
        assert dict(flatten(symbolic.next)) == dict(flatten(concrete.next))
    return concrete


def test_symbolic_and_concrete_runs_agree():
    moved = []

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(st.data())
    def run(data):
        m, ops = set_up(), Z3Ops(CFG.memsize)
        for _ in range(10):
            name = data.draw(st.sampled_from(sorted(TRANSITIONS) + ["rdma_write", "rdma_read"] * 3),
                             label="transition")
            if name in ("rdma_write", "rdma_read") and data.draw(st.booleans(), label="directed"):
                args = data.draw(transfer(m, name), label="args")
            else:
                args = draw_args(data.draw, m, name)
                if TRANSITIONS[name].choices > 1:
                    args = attrs.evolve(args, choice=data.draw(st.integers(0, 1), label="choice"))
            step = compare(m, name, args, ops)
            if step.enabled:
                moved.append(name in ("rdma_write", "rdma_read", "send") and step.status == 0)
                m.take(step)

    run()
    assert sum(moved) >= 5, "too few successful transfers were compared"
