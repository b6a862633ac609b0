"""The NIC facts, checked: a Hypothesis state machine drives the access
model (nic/access.py) and a real NIC (nic/rxe.py on rxe) in lockstep, the
way conform's machine drives the SPI model and a provider: MR registrations
over the owner's buffer, type-2 windows bound over sub-ranges of larger
MRs, invalidations, deregistrations, and READs and WRITEs with every key in
sight at the edges of every range. After each step the outcome, the bytes a
READ brought, the owner's whole buffer and the state of both ends of the
connection must agree.

Each rule only draws its arguments; ``do_<step>`` runs them, so a logged
trace replays (``replay``). A divergence is shrunk by deleting, one at a
time, every step whose removal keeps the same divergence (``minimize``: on
a real NIC each replay costs a fresh set-up, and Hypothesis's own shrinker
replays hundreds of times). It is a *known deviation* when switching one rule of the model
(``DEVIATIONS``) makes the model predict exactly what the NIC did at that
step; the campaign then accepts it and runs again, until a round finds
nothing. It fails on a divergence no deviation explains, and on a named
deviation it did not find (the fact sheet would be out of date).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import attrs
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from hypothesis.errors import Flaky
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from sanspi.nic.access import (
    CONN_PD, DEVIATIONS, LOCAL_WRITE, MW_BIND, REMOTE_READ, REMOTE_WRITE, AccessModel, Outcome,
)
from sanspi.seeded import run_seeded

#: MR access sets the machine registers with (ibv_reg_mr wants LOCAL_WRITE
#: beside REMOTE_WRITE); mostly bindable ones, as the verbs provider's are.
ACCESS_SETS = (
    MW_BIND | LOCAL_WRITE, MW_BIND | LOCAL_WRITE, MW_BIND, MW_BIND | REMOTE_READ | REMOTE_WRITE | LOCAL_WRITE,
    REMOTE_READ | REMOTE_WRITE | LOCAL_WRITE, REMOTE_READ, LOCAL_WRITE,
)
WINDOW_ACCESS = (REMOTE_READ | REMOTE_WRITE, REMOTE_WRITE, REMOTE_READ)
#: A key no object has: an index far above any the lab hands out.
GARBAGE_KEY = 0x7FFF_FF00
LENGTHS = (0, 1, 2, 8, 64)
#: What the owner's buffer holds at the start of an example (never one value, so a misplaced byte shows).
PATTERN = bytes((7 * i + (i >> 8)) & 0xFF for i in range(1 << 16))


class Divergence(AssertionError):
    """The NIC did not do what the model predicts; ``explained_by`` names the
    deviations whose switch makes the model predict what it did."""

    def __init__(self, message: str, explained_by: tuple[str, ...]) -> None:
        super().__init__(message)
        self.explained_by = explained_by


@attrs.frozen
class Seen:
    """What one step showed: done or refused, a READ's bytes, the owner's
    buffer, and (owner's end up, requester's end up) of its connection."""

    ok: bool
    data: bytes
    memory: bytes = attrs.field(repr=False)
    states: tuple = ()

    def differs(self, other: "Seen") -> str:
        if self.ok != other.ok:
            return "did it" if self.ok else "refused it"
        if self.data != other.data:
            return f"read {self.data[:8].hex() or 'nothing'}"
        if self.memory != other.memory:
            i = next(i for i in range(len(self.memory)) if self.memory[i] != other.memory[i])
            return f"left byte {i} at {self.memory[i]:#04x}"
        return "left the connection's ends " + "/".join("up" if up else "in error" for up in self.states)


@attrs.define
class Logged:
    """One step: its name and replayable arguments, and what happened."""

    name: str
    args: dict
    outcome: str = ""

    def __str__(self) -> str:
        shown = ", ".join(f"{k}={_shown(k, v)}" for k, v in self.args.items())
        return f"{self.name}({shown})" + (f" -> {self.outcome}" if self.outcome else "")


def _shown(name: str, value: Any) -> str:
    if name == "access":
        return _access_name(value)
    if name == "key":
        return _key_name(value)
    return repr(value)


def _access_name(bits: int) -> str:
    names = [n for b, n in ((REMOTE_READ, "REMOTE_READ"), (REMOTE_WRITE, "REMOTE_WRITE"),
                            (LOCAL_WRITE, "LOCAL_WRITE"), (MW_BIND, "MW_BIND")) if bits & b]
    return "|".join(names) or "0"


def _key_name(ref: Any) -> str:
    """A key reference: ("mw", h) the window's key now, ("mw", h, i) its i-th
    key (0: allocation), ("rkey"|"lkey", h) an MR's, ("none",) nobody's."""
    if not isinstance(ref, tuple):
        return f"{ref:#x}" if isinstance(ref, int) else repr(ref)
    if ref[0] == "mw":
        return f"key of mw {ref[1]}" + (f" #{ref[2]}" if len(ref) > 2 else "")
    return f"{ref[0]} of mr {ref[1]}" if ref[0] in ("rkey", "lkey") else "nobody's key"




def make_machine(nic_factory: Callable[[], Any], deviations: frozenset,
                 keep: Callable[[Any], None] = lambda m: None, avoid: frozenset = frozenset(),
                 ) -> type[RuleBasedStateMachine]:
    """A lockstep machine class over NICs made by ``nic_factory``, with the
    model's ``deviations`` switched; ``keep`` sees each machine as it is made.
    Binds that trigger a deviation in ``avoid`` are not made (a deviation
    already found then shows in no later finding's trace)."""
    cross_pd = "bind-mr-pd" not in avoid  # binds over another PD's MR, the one deviation a bind shows
    offs = ("",) * 6 + (("pd", "pd") if cross_pd else ()) + ("mr", "conn", "range", "window")

    class NicLockstep(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.log: list[Logged] = []
            keep(self)
            self.nic = nic_factory()
            self.model = AccessModel(self.nic.size, deviations)
            self.nic.fill(PATTERN[:self.nic.size])
            self.model.mem[:] = PATTERN[:self.nic.size]
            self.next_handle = 1
            self.lkeys: dict[int, int] = {}  # MR handle -> lkey
            self.keys_of: dict[int, list[int]] = {}  # window -> every key it had (allocation, binds)
            self.spent: set[int] = set()  # windows invalidated or refused a bind: never bound again

        def teardown(self) -> None:
            self.nic.close()

        def run(self, name: str, **args: Any) -> None:
            self.log.append(Logged(name, args))
            getattr(self, f"do_{name}")(**args)

        def handle(self) -> int:
            h, self.next_handle = self.next_handle, self.next_handle + 1
            return h

        # --- the lockstep ---------------------------------------------------------

        @staticmethod
        def _seen(out: Outcome, conn: int | None, model: AccessModel) -> Seen:
            return Seen(out.ok, out.data, bytes(model.mem), tuple(model.up[conn]) if conn is not None else ())

        def step(self, on_model: Callable[[AccessModel], Outcome], on_nic: Callable[[], tuple[bool, bytes]],
                 conn: int | None = None, shown: str = "") -> Outcome:
            before = self.model.copy()
            out = on_model(self.model)
            want = self._seen(out, conn, self.model)
            ok, data = on_nic()
            states = tuple(self.nic.states(conn, list(want.states))) if conn is not None else ()
            got = Seen(ok, data, self.nic.memory(), states)
            logged = self.log[-1]
            logged.outcome = (f"{shown}: " if shown else "") + ("done" if ok else "refused") \
                + (f", read {data[:8].hex()}" if data else "")
            if got != want:
                explained = []
                for d in sorted(set(DEVIATIONS) - self.model.deviations):
                    variant = before.copy(before.deviations | {d})
                    if self._seen(on_model(variant), conn, variant) == got:
                        explained.append(d)
                why = f" ({out.why} rule)" if out.why else ""
                raise Divergence(f"{Logged(logged.name, logged.args)}: the NIC {got.differs(want)}, the model "
                                 f"{want.differs(got)}{why}", tuple(explained))
            return out

        # --- the steps (replayable from their arguments) ------------------------------

        def do_reg_mr(self, mr: int, pd: int, addr: int, length: int, access: int) -> None:
            rkey, self.lkeys[mr] = self.nic.reg_mr(mr, pd, addr, length, access)
            self.model.reg_mr(mr, pd, addr, length, access, rkey)
            self.log[-1].outcome = f"rkey {rkey:#x}, lkey {self.lkeys[mr]:#x}"

        def do_dereg_mr(self, mr: int) -> None:
            self.step(lambda m: m.dereg_mr(mr), lambda: (self.nic.dereg_mr(mr), b""))

        def do_alloc_mw(self, mw: int, pd: int) -> None:
            key = self.nic.alloc_mw(mw, pd)
            self.model.alloc_mw(mw, pd, key)
            self.keys_of[mw] = [key]
            self.log[-1].outcome = f"key {key:#x}"

        def do_dealloc_mw(self, mw: int) -> None:
            self.nic.dealloc_mw(mw)
            self.model.dealloc_mw(mw)

        def do_bind(self, mw: int, mr: int, conn: int, addr: int, length: int, access: int, key: int) -> None:
            out = self.step(lambda m: m.bind(mw, mr, conn, addr, length, access, key),
                            lambda: (self.nic.bind(mw, mr, conn, addr, length, access, key), b""), conn)
            if out.ok:
                self.keys_of[mw].append(self.model.mws[mw].key)
                self.log[-1].outcome += f", key {self.model.mws[mw].key:#x}"
            else:  # binding it again after its QP is destroyed crashed the process (lab/RXE-FACTS.md)
                self.spent.add(mw)

        def do_invalidate(self, mw: int) -> None:
            conn, key = self.model.mws[mw].qp[0], self.model.mws[mw].key
            self.step(lambda m: m.invalidate(mw, conn, key), lambda: (self.nic.invalidate(conn, key), b""), conn)
            self.spent.add(mw)

        def resolve(self, ref: tuple) -> int:
            if ref[0] == "mw":
                return self.model.mws[ref[1]].key if len(ref) == 2 else self.keys_of[ref[1]][ref[2]]
            if ref[0] in ("rkey", "lkey"):
                return self.model.mrs[ref[1]].rkey if ref[0] == "rkey" else self.lkeys[ref[1]]
            return GARBAGE_KEY

        def do_access(self, conn: int, write: bool, key: tuple, addr: int, length: int) -> None:
            value = self.resolve(key)
            payload = bytes((0xA0 + i) & 0xFF for i in range(length)) if write else b""
            self.step(lambda m: m.access(conn, write, value, addr, length, payload),
                      lambda: self.nic.access(conn, write, value, addr, length, payload), conn,
                      shown=f"key {value:#x}")

        def do_reconnect(self, conn: int) -> None:
            """New QPs; the windows bound to the old one are deallocated first
            (teardown order, lab/RXE-FACTS.md)."""
            for h, w in self.model.mws.items():
                if w.valid and w.bound and w.qp[0] == conn:
                    self.nic.dealloc_mw(h)
                    self.model.dealloc_mw(h)
            self.nic.reconnect(conn)
            self.model.reconnect(conn)

        # --- what exists (the model's view, which the NIC has matched so far) ---------

        def mrs(self) -> list[int]:
            return sorted(h for h, m in self.model.mrs.items() if m.valid)

        def windows(self, bindable: bool = False) -> list[int]:
            return sorted(h for h, w in self.model.mws.items() if w.valid and not (bindable and h in self.spent))

        def up(self, end: int | None = None) -> list[int]:
            return [c for c in range(len(CONN_PD)) if (all(self.model.up[c]) if end is None else self.model.up[c][end])]

        def usable(self) -> list[int]:
            """Windows bound to the current QP of a connection whose ends are up."""
            return sorted(h for h, w in self.model.mws.items() if w.valid and w.bound and w.qp[0] in self.up()
                          and w.qp[1] == self.model.gen[w.qp[0]])

        # --- the rules: each draws arguments, then runs its step ------------------

        @initialize(data=st.data())
        def start(self, data: Any) -> None:
            """Every example starts with a bindable MR in PD 0 and a window in
            each PD (steps like any other: the minimizer drops those not needed)."""
            addr = data.draw(st.integers(0, self.nic.size // 512 - 2), label="addr") * 512
            self.run("reg_mr", mr=self.handle(), pd=0, addr=addr,
                     length=data.draw(st.integers(2, (self.nic.size - addr) // 512), label="pages") * 512,
                     access=MW_BIND | LOCAL_WRITE)
            for pd in (0, 1):
                self.run("alloc_mw", mw=self.handle(), pd=pd)

        @rule(data=st.data())
        def reg_mr(self, data: Any) -> None:
            size = self.nic.size
            addr = data.draw(st.integers(0, size // 512 - 1), label="addr") * 512
            self.run("reg_mr", mr=self.handle(), pd=data.draw(st.sampled_from((0, 0, 0, 1)), label="pd"),
                     addr=addr, length=data.draw(st.integers(1, (size - addr) // 512), label="pages") * 512,
                     access=data.draw(st.sampled_from(ACCESS_SETS), label="access"))

        @precondition(lambda self: self.mrs())
        @rule(data=st.data())
        def dereg_mr(self, data: Any) -> None:
            if data.draw(st.integers(0, 2), label="skip"):  # rarer than the rules that build
                return
            self.run("dereg_mr", mr=data.draw(st.sampled_from(self.mrs()), label="mr"))

        @rule(data=st.data())
        def alloc_mw(self, data: Any) -> None:
            self.run("alloc_mw", mw=self.handle(), pd=data.draw(st.sampled_from((0, 0, 0, 1)), label="pd"))

        @precondition(lambda self: self.windows())
        @rule(data=st.data())
        def dealloc_mw(self, data: Any) -> None:
            if data.draw(st.integers(0, 2), label="skip"):
                return
            self.run("dealloc_mw", mw=data.draw(st.sampled_from(self.windows()), label="mw"))

        @precondition(lambda self: self.windows(bindable=True) and self.mrs() and self.up(end=0))
        @rule(data=st.data())
        def bind(self, data: Any) -> None:
            """Mostly a fresh window over a sub-range strictly inside a bindable
            MR of its PD, on a connection of that PD; else one thing is off: a
            bindable MR of the other PD, any MR, a connection of the other PD, a
            range one byte too long, a window already bound.
            (A window invalidated, or refused a bind, is never bound again:
            pyverbs 44 would post its stale allocation-time key, and a bind of
            a window after a bind of it on a QP since destroyed crashed the
            process, lab/RXE-FACTS.md.)"""
            off = data.draw(st.sampled_from(offs), label="off")
            fresh = [h for h in self.windows(bindable=True) if not self.model.mws[h].bound]
            pairs = [(h, m) for h in fresh for m in self.mrs() if self.model.mrs[m].access & MW_BIND
                     and (self.model.mrs[m].pd == self.model.mws[h].pd) == (off != "pd")]
            if pairs and off in ("", "pd"):
                h, mr_h = data.draw(st.sampled_from(pairs), label="window and mr")
            else:
                h = data.draw(st.sampled_from(fresh if fresh and off != "window" else self.windows(bindable=True)),
                              label="mw")
                pd = self.model.mws[h].pd
                mrs = [m for m in self.mrs() if cross_pd or self.model.mrs[m].pd == pd]
                if not mrs:
                    return
                mr_h = data.draw(st.sampled_from(mrs), label="mr")
            pd = self.model.mws[h].pd
            mr = self.model.mrs[mr_h]
            conns = [c for c in self.up(end=0) if CONN_PD[c] == pd]
            conn = data.draw(st.sampled_from(conns if conns and off != "conn" else self.up(end=0)), label="conn")
            units = mr.length // 64
            start = data.draw(st.integers(0, max(0, units - 2)), label="start") * 64
            length = data.draw(st.integers(1, max(1, units - start // 64 - 1)), label="length") * 64
            if off == "range":
                length = mr.length - start + 1
            writable = mr.access & LOCAL_WRITE or off == "mr"
            access = data.draw(st.sampled_from(WINDOW_ACCESS if writable else (REMOTE_READ,)), label="access")
            self.run("bind", mw=h, mr=mr_h, conn=conn, addr=mr.addr + start, length=length, access=access,
                     key=data.draw(st.integers(0, 255), label="key byte"))

        @precondition(lambda self: any(w.qp[1] == self.model.gen[w.qp[0]] and self.model.up[w.qp[0]][0]
                                       for w in self.model.mws.values() if w.valid and w.bound))
        @rule(data=st.data())
        def invalidate(self, data: Any) -> None:
            """A local invalidate of a bound window's key on its own QP (as the
            provider revokes a descriptor, RDEREG-02)."""
            bound = sorted(h for h, w in self.model.mws.items() if w.valid and w.bound
                           and w.qp[1] == self.model.gen[w.qp[0]] and self.model.up[w.qp[0]][0])
            self.run("invalidate", mw=data.draw(st.sampled_from(bound), label="mw"))

        @precondition(lambda self: self.usable())
        @rule(data=st.data())
        def access_through_window(self, data: Any) -> None:
            self.use_window(data, data.draw(st.sampled_from(self.usable()), label="mw"))

        def use_window(self, data: Any, h: int) -> None:
            """A READ or WRITE with bound window ``h``'s key at an edge of the
            window or of its MR (the range rule's two readings), on its own
            connection or, one time in three, on another (the QP rule)."""
            w = self.model.mws[h]
            mr = self.model.mrs[w.mr]
            write = bool(w.access & REMOTE_WRITE) if data.draw(st.integers(0, 5), label="rights") \
                else not w.access & REMOTE_WRITE
            # the window's edges from inside and (twice as often) from outside, and the MR's
            edges = [w.addr, w.addr + w.length - 1, mr.addr, mr.addr + mr.length - 1] + [w.addr - 1, w.addr + w.length] * 2
            addr = data.draw(st.sampled_from(edges), label="addr")
            length = data.draw(st.sampled_from(LENGTHS[1:]), label="length")
            if not data.draw(st.integers(0, 2), label="end at the edge"):
                addr -= length - 1
            # another connection, of the window's PD when one is up (a QP of another PD fails the PD rule first)
            others = [c for c in self.up() if c != w.qp[0]]
            others = [c for c in others if CONN_PD[c] == w.pd] or others
            conn = data.draw(st.sampled_from(others), label="other qp") \
                if others and not data.draw(st.integers(0, 2), label="own qp") else w.qp[0]
            self.run("access", conn=conn, write=write, key=("mw", h), addr=addr, length=length)

        @precondition(lambda self: self.up())
        @rule(data=st.data())
        def expose_and_use(self, data: Any) -> None:
            """What the provider does, then what a peer does: a fresh window over
            a sub-range strictly inside an MR of its PD (registered here if
            none fits), bound on a connection of that PD, then one access."""
            conn = data.draw(st.sampled_from(self.up()), label="conn")
            pd = CONN_PD[conn]
            # one time in six the MR is another PD's (the bind must then fail)
            mr_pd = 1 - pd if cross_pd and not data.draw(st.integers(0, 5), label="mr of another pd") else pd
            mrs = [m for m in self.mrs() if self.model.mrs[m].pd == mr_pd and self.model.mrs[m].access & MW_BIND
                   and self.model.mrs[m].length >= 128]
            if not mrs:
                self.run("reg_mr", mr=self.handle(), pd=mr_pd, addr=0, length=self.nic.size,
                         access=MW_BIND | LOCAL_WRITE)
                mrs = [self.next_handle - 1]
            mr_h = data.draw(st.sampled_from(mrs), label="mr")
            fresh = [h for h in self.windows(bindable=True) if not self.model.mws[h].bound and self.model.mws[h].pd == pd]
            if not fresh:
                self.run("alloc_mw", mw=self.handle(), pd=pd)
                fresh = [self.next_handle - 1]
            h = data.draw(st.sampled_from(fresh), label="mw")
            mr = self.model.mrs[mr_h]
            units = mr.length // 64
            start = data.draw(st.integers(0, units - 2), label="start") * 64
            length = data.draw(st.integers(1, units - start // 64 - 1), label="length") * 64
            access = data.draw(st.sampled_from(WINDOW_ACCESS if mr.access & LOCAL_WRITE else (REMOTE_READ,)),
                               label="access")
            self.run("bind", mw=h, mr=mr_h, conn=conn, addr=mr.addr + start, length=length, access=access,
                     key=data.draw(st.integers(0, 255), label="key byte"))
            if self.model.mws[h].bound and self.model.up[conn] == [True, True]:
                self.use_window(data, h)

        @precondition(lambda self: self.up())
        @rule(data=st.data())
        def access(self, data: Any) -> None:
            """A READ or WRITE with any key in sight (a window's current, earlier
            or allocation key, an MR's rkey or lkey, also of dead objects, or
            nobody's) at an edge of any window or MR."""
            keys = [("none",)]
            for h, w in self.model.mws.items():
                keys += [("mw", h)] * (3 if w.bound else 1) + [("mw", h, i) for i in range(len(self.keys_of[h]))]
            for h in self.model.mrs:
                keys += [("rkey", h), ("lkey", h)]
            spans = [(w.addr, w.length) for w in self.model.mws.values() if w.length]
            spans += [(m.addr, m.length) for m in self.model.mrs.values()]
            edges = sorted({a for lo, n in spans for a in (lo - 1, lo, lo + n // 2, lo + n - 1, lo + n)} | {0})
            length = data.draw(st.sampled_from(LENGTHS), label="length")
            addr = data.draw(st.sampled_from(edges), label="addr")
            if data.draw(st.booleans(), label="end at the edge"):
                addr -= length
            self.run("access", conn=data.draw(st.sampled_from(self.up()), label="conn"),
                     write=data.draw(st.booleans(), label="write"), key=data.draw(st.sampled_from(keys), label="key"),
                     addr=addr, length=length)

        @precondition(lambda self: len(self.up()) < len(CONN_PD))
        @rule(data=st.data())
        def reconnect(self, data: Any) -> None:
            self.run("reconnect", conn=data.draw(st.sampled_from([c for c in range(len(CONN_PD))
                                                                  if c not in self.up()]), label="conn"))

    return NicLockstep


def replay(nic_factory: Callable[[], Any], steps: list[tuple[str, dict]],
           deviations: frozenset = frozenset()) -> list[Logged]:
    """Run a trace on a fresh NIC and model; a divergence raises (with the
    log so far as ``exc.log``). The log."""
    m = make_machine(nic_factory, deviations)()
    try:
        for name, args in steps:
            m.run(name, **args)
        return m.log
    except Divergence as exc:
        exc.log = m.log
        raise
    finally:
        m.teardown()


def minimize(nic_factory: Callable[[], Any], trace: list[Logged], deviations: frozenset,
             divergence: Divergence) -> tuple[list[Logged], Divergence]:
    """Delete, one at a time from the end, every step whose removal keeps a
    divergence explained the same way (Hypothesis's shrinking keeps steps
    whose deletion would renumber the objects after them; here a step names
    its objects, so deleting one changes nothing else)."""
    steps = [(s.name, s.args) for s in trace]
    best = (trace, divergence)
    for i in range(len(steps) - 2, -1, -1):  # the last step is the divergence itself
        trial = steps[:i] + steps[i + 1:]
        try:
            replay(nic_factory, trial, deviations)
        except Divergence as exc:
            if exc.explained_by == divergence.explained_by:
                steps, best = trial, (exc.log, exc)
        except (KeyError, IndexError):
            pass  # it made an object a later step uses: it stays
    return best


@attrs.frozen
class Finding:
    deviation: str
    what: str
    divergence: str
    trace: tuple[Logged, ...]
    under: frozenset = frozenset()  # the deviations the model accepted when it was found


@attrs.frozen
class NicResult:
    examples: int
    steps: int
    seconds: float
    found: tuple[Finding, ...]
    unknown: str | None = None  # a divergence no named deviation explains
    unknown_trace: tuple[Logged, ...] = ()
    missing: tuple[str, ...] = ()  # named deviations the campaign did not find

    @property
    def ok(self) -> bool:
        return self.unknown is None and not self.missing


def run_nic(nic_factory: Callable[[], Any], examples: int, steps: int, seed: int | None = 0,
            progress: Callable[[str], None] | None = None) -> NicResult:
    """Rounds of the lockstep: each accepts the deviations found before it."""
    machines: list[Any] = []
    counted = {"examples": 0, "steps": 0}

    def keep(m: Any) -> None:
        if machines:
            counted["steps"] += len(machines[-1].log)
        machines[:] = [m]
        counted["examples"] += 1
        if progress and counted["examples"] % 10 == 0:
            progress(f"nic: {counted['examples']} examples, {counted['steps']} steps")

    found: list[Finding] = []
    unknown, unknown_trace = None, ()
    start = time.perf_counter()
    avoid_found = True  # while a named deviation is missing, binds that trigger a found one are not made
    for _ in range(len(DEVIATIONS) + 2):
        accepted = frozenset(f.deviation for f in found)
        try:
            run_seeded(make_machine(nic_factory, accepted, keep, accepted if avoid_found else frozenset()), seed,
                       max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
                       suppress_health_check=list(HealthCheck), print_blob=False,
                       phases=[Phase.generate])  # ``minimize`` shrinks: fewer replays on a real NIC
            divergence = None
        except Divergence as exc:
            divergence = exc
        except Flaky as exc:  # the NIC answered the same steps differently: not a finding
            unknown = f"the NIC was not repeatable: {str(exc).splitlines()[0]}"
            break
        if divergence is None:
            if avoid_found and accepted:
                avoid_found = False  # a last round with every bind, every known deviation accepted
                continue
            break
        if len(found) + 1 == len(DEVIATIONS):
            avoid_found = False  # all named ones are about to be found: the next round is the last
        trace, divergence = minimize(nic_factory, list(machines[-1].log), accepted, divergence)
        message = str(divergence).splitlines()[0]
        if not divergence.explained_by:
            unknown, unknown_trace = message, tuple(trace)
            break
        name = divergence.explained_by[0]
        found.append(Finding(name, DEVIATIONS[name], message, tuple(trace), accepted))
    if machines:
        counted["steps"] += len(machines[-1].log)
    missing = () if unknown else tuple(d for d in DEVIATIONS if d not in {f.deviation for f in found})
    return NicResult(counted["examples"], counted["steps"], time.perf_counter() - start, tuple(found),
                     unknown, unknown_trace, missing)
