"""The z3 encoding and the concrete model are one definition run two ways.

Each transition is encoded once per call shape over a fully symbolic state
and fully symbolic arguments (fresh z3 constants, as the prover builds
them). Concrete states and arguments from random runs of the model, with
successful RDMA writes, reads and sends among them, are then substituted
into that encoding; what z3 simplifies it to must be exactly what the
concrete run computes: enabled, status, result and every field and byte of
the next state. The test also counts the ``ite`` calls whose condition was a
z3 term, so an encoding that quietly took the plain-Python paths fails it.
"""

from __future__ import annotations

import attrs
import z3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sanspi.model.constants import KIND_LOCAL, KIND_RDMA, MEM_READWRITE, OK, RECV_DONE, RECV_IDLE
from sanspi.model.machine import Model
from sanspi.model.ops import CONCRETE
from sanspi.model.state import Config
from sanspi.model.transitions import TRANSITIONS, RdmaArgs, RecvArgs, SendArgs, Sge
from sanspi.proof.symbolic import MEM_SORT, Shape, Z3Ops, fresh_args, fresh_state, lift_memory

from ..model.test_random_sequences import draw_args

CFG = Config(pages=2, page_size=32, slots=3, sockets=2, max_sge=2)
TRANSFERS = ("rdma_write", "rdma_read", "send")


class CountingOps(Z3Ops):
    """Z3Ops that counts the ``ite`` calls (all, and those whose condition
    is a z3 term) and the memory operations (always over z3 arrays)."""

    def __init__(self, memsize):
        super().__init__(memsize)
        self.ites = self.symbolic_ites = self.memory_ops = 0

    def ite(self, cond, then, other):
        self.ites += 1
        self.symbolic_ites += isinstance(cond, z3.ExprRef)
        return super().ite(cond, then, other)

    def _overwrite(self, mem, at, n, byte):
        self.memory_ops += 1
        return super()._overwrite(mem, at, n, byte)

    def mem_copy(self, dst, dst_at, src, src_at, n):
        self.memory_ops += 1
        return super().mem_copy(dst, dst_at, src, src_at, n)


@attrs.frozen
class Encoding:
    state: object  # the symbolic pre-state
    args: object  # the symbolic arguments
    step: object  # the transition's Step over them
    ops: object  # the ops that built it, with its counts


class Encodings:
    """Each transition encoded once per call shape, over a fresh symbolic
    state made by ``fresh(cfg, tag)`` with ops made by ``make_ops(memsize)``."""

    def __init__(self, cfg, make_ops, fresh):
        self.cfg, self.make_ops, self.fresh = cfg, make_ops, fresh
        self.built: dict[tuple[str, Shape], Encoding] = {}

    def __call__(self, name: str, shape: Shape) -> Encoding:
        if (name, shape) not in self.built:
            ops = self.make_ops(self.cfg.memsize)
            s = self.fresh(self.cfg, "s")
            a = fresh_args(TRANSITIONS[name].args, shape, "a")
            self.built[name, shape] = Encoding(s, a, TRANSITIONS[name].fn(self.cfg, s, a, ops), ops)
        return self.built[name, shape]


encoding = Encodings(CFG, CountingOps, fresh_state)


def shape_of(args) -> Shape:
    return Shape(getattr(args, "host", None), len(args.sges) if hasattr(args, "sges") else None)


def leaves(x, path="s"):
    """(path, leaf) for every int, bool, memory or z3 term in a record."""
    if attrs.has(type(x)):
        for f in attrs.fields(type(x)):
            yield from leaves(getattr(x, f.name), f"{path}.{f.name}")
    elif isinstance(x, tuple):
        for i, v in enumerate(x):
            yield from leaves(v, f"{path}[{i}]")
    else:
        yield path, x


def substitution(symbolic, concrete) -> list[tuple]:
    """Each fresh z3 constant of ``symbolic`` paired with its concrete value."""
    pairs = []
    for (path, term), (_, value) in zip(leaves(symbolic), leaves(concrete), strict=True):
        if not isinstance(term, z3.ExprRef):  # fixed by the shape (the calling host)
            assert term == value, path
        elif isinstance(value, bytes):
            pairs.append((term, lift_memory(value)))
        elif isinstance(value, bool):
            pairs.append((term, z3.BoolVal(value)))
        else:
            pairs.append((term, z3.IntVal(value)))
    return pairs


class Substitution:
    """``z3.substitute`` with its pairs converted once (z3py re-checks every
    pair's sorts on each call, which dominated this test's time)."""

    def __init__(self, pairs: list[tuple]):
        self.ctx = z3.main_ctx()
        self.n = len(pairs)
        self.src = (z3.Ast * self.n)(*[p[0].as_ast() for p in pairs])
        self.dst = (z3.Ast * self.n)(*[p[1].as_ast() for p in pairs])
        self.keep = pairs  # the arrays hold raw pointers: keep their owners alive

    def __call__(self, term):
        ast = z3.Z3_substitute(self.ctx.ref(), term.as_ast(), self.n, self.src, self.dst)
        return z3.z3._to_expr_ref(ast, self.ctx)


def evaluate(term, substitute: Substitution):
    """A term of the encoding with the concrete values put in, as plain Python."""
    if isinstance(term, (bool, int)):
        return term
    term = substitute(term)
    if term.sort() == MEM_SORT:
        # one simplify over every byte, so the substituted array is reduced
        # once; 16 bits a byte, so a value outside 0..255 shows as one
        packed = z3.simplify(z3.Concat(*[z3.Int2BV(z3.Select(term, i), 16) for i in range(CFG.memsize)])).as_long()
        cells = [packed >> (16 * (CFG.memsize - 1 - i)) & 0xFFFF for i in range(CFG.memsize)]
        assert max(cells) < 256, f"a byte outside 0..255: {cells}"
        return bytes(cells)
    term = z3.simplify(term)
    assert z3.is_true(term) or z3.is_false(term) or z3.is_int_value(term), f"not a value: {term}"
    return z3.is_true(term) if z3.is_bool(term) else term.as_long()


def plain(x):
    return x if isinstance(x, (bool, bytes)) else int(x)


def compare(m: Model, name: str, args) -> object:
    """Substitute this state and these arguments into the encoding; it must
    give what the concrete run gives, in every field."""
    enc = encoding(name, shape_of(args))
    pairs = Substitution(substitution(enc.state, m.state) + substitution(enc.args, args))
    concrete = TRANSITIONS[name].fn(CFG, m.state, args, CONCRETE)
    for field in ("enabled", "status", "result"):
        assert evaluate(getattr(enc.step, field), pairs) == plain(getattr(concrete, field)), (name, field, args)
    for (path, term), (_, value) in zip(leaves(enc.step.next), leaves(concrete.next), strict=True):
        assert evaluate(term, pairs) == plain(value), (name, path, args)
    return concrete


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
        m.call("register_memory", host=h, sock=0, addr=0, length=32, flags=MEM_READWRITE)
        m.call("register_rdma_memory", host=h, sock=0, addr=32, length=32, flags=MEM_READWRITE,
               desc_len=CFG.descriptor_size)
    return m


def _rid(m: Model, host: int, kind: int) -> int:
    return next((sl.rid for sl in m.state.hosts[host].slots if sl.used and sl.kind == kind), 0)


@st.composite
def buffers(draw, m: Model, host: int, room: int = 32):
    """One or two buffers in the host's local registration on socket 0, at
    most ``room`` bytes in all (32 is the size of every set-up registration)."""
    handle = _rid(m, host, KIND_LOCAL)
    count = draw(st.integers(1, min(CFG.max_sge, room)))
    out = []
    for _ in range(count):
        length = draw(st.integers(1, room // count))
        out.append(Sge(handle=handle, addr=draw(st.integers(0, 32 - length)), length=length))
    return tuple(out)


@st.composite
def transfer(draw, m: Model, name: str):
    """RDMA arguments naming the set-up registrations, mostly in bounds."""
    host = draw(st.integers(0, 1))
    sges = draw(buffers(m, host))
    total = sum(g.length for g in sges)
    offset = draw(st.integers(0, max(0, 32 - total)) | st.integers(0, 40))
    return RdmaArgs(host=host, sock=0, sges=sges, desc=_rid(m, 1 - host, KIND_RDMA), offset=offset, choice=0)


@st.composite
def exchange(draw, m: Model):
    """A receive posted on one host's socket 0 (if none is) and a send to it
    from the other, mostly one that fits."""
    host = draw(st.integers(0, 1))
    peer = 1 - host
    steps = []
    if m.state.hosts[peer].eps[0].recv == RECV_IDLE:
        addr = draw(st.integers(0, 31))
        steps.append(("post_recv", RecvArgs(host=peer, sock=0, handle=_rid(m, peer, KIND_LOCAL), addr=addr,
                                            length=draw(st.integers(1, 32 - addr)))))
    room = steps[0][1].length if steps else max(1, m.state.hosts[peer].eps[0].recv_len)
    room = draw(st.sampled_from([room, room, room, 32]))  # one in four may not fit
    steps.append(("send", SendArgs(host=host, sock=0, sges=draw(buffers(m, host, room)))))
    return steps


def drive(compare, max_examples: int = 12) -> tuple[dict[str, int], dict[str, int]]:
    """Random concrete runs from ``set_up()``: every transition once per
    example, in a drawn order, each followed now and then by a transfer aimed
    at success. ``compare(m, name, args)`` checks a call and returns the
    concrete Step; the runs take it. Returns (calls compared, successes) by
    transition."""
    seen: dict[str, int] = {}
    succeeded: dict[str, int] = {}

    @settings(max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow],
              database=None, derandomize=True)
    @given(st.data())
    def run(data):
        m = set_up()
        for name in data.draw(st.permutations(sorted(TRANSITIONS)), label="order"):
            args = draw_args(data.draw, m, name)
            if TRANSITIONS[name].choices > 1:
                args = attrs.evolve(args, choice=data.draw(st.integers(0, 1), label="choice"))
            calls = [(name, args)]
            aim = data.draw(st.sampled_from((None,) + TRANSFERS), label="directed transfer")
            if aim == "send":
                calls += data.draw(exchange(m), label="exchange")
            elif aim:
                calls.append((aim, data.draw(transfer(m, aim), label="args")))
            for call, args in calls:
                step = compare(m, call, args)
                seen[call] = seen.get(call, 0) + 1
                if step.enabled:
                    if step.status == OK:
                        succeeded[call] = succeeded.get(call, 0) + 1
                    m.take(step)
            # reap a delivered receive, so the next exchange can post again
            for h in (0, 1):
                if m.state.hosts[h].eps[0].recv == RECV_DONE:
                    m.take(compare(m, "recv_done", TRANSITIONS["recv_done"].args(host=h, sock=0)))

    run()
    assert sorted(seen) == sorted(TRANSITIONS), f"never compared: {set(TRANSITIONS) - set(seen)} ({seen})"
    assert all(succeeded.get(name, 0) >= 3 for name in TRANSFERS), f"too few successful transfers: {succeeded}"
    return seen, succeeded


def test_symbolic_and_concrete_runs_agree():
    drive(compare)
    # the encodings really were built from z3 terms, not from Python values:
    # every transition that decides anything (calls ite) decided on z3
    # conditions, and the two that only write memory wrote z3 arrays
    for (name, shape), enc in encoding.built.items():
        counts = (enc.ops.ites, enc.ops.symbolic_ites, enc.ops.memory_ops)
        assert enc.ops.symbolic_ites > 0 or (enc.ops.ites == 0 and enc.ops.memory_ops > 0), (name, shape, counts)
    plain_python = sorted({name for (name, _), enc in encoding.built.items() if enc.ops.ites == 0})
    assert plain_python == ["alloc", "app_write"]
