"""The attack: sessions in which the victim (host 0) serves its honest peer
under the model while the hostile peer on connection ``ATTACK_SOCKET``
makes raw attempts, class by class.

A session is one World (attack/world.py): the victim, host 1 (its honest
peer and the hostile peer, attack/host.py) and the model. The victim and
its honest peer run an honest workload between attempts (RDMA
registrations on both honest connections used by the peer, local
registrations, deregistrations, the cache callback on freed and
re-allocated pages), every step compared with the model. The victim also
exposes buffers to the hostile peer, which cannot be told from an honest
one. Each attempt is one raw READ or WRITE; after it every byte of both
hosts and every connection is compared with the model. A refused attempt
leaves the attacked connection in the error state (CONN-01): it is closed
and connected again, as a switch would. A session ends after
``SESSION_ATTEMPTS`` attempts or at the first divergence (the victim's
memory then differs from the model's, so the next attempts start afresh),
and its resources must be back at the baseline after shutdown.

The attacker knows every address (worst case): the victim's registrations
as the model has them, its descriptors' keys as the victim issued them and,
on rxe, its MRs' keys as ``rdma resource show mr`` lists them.
"""

from __future__ import annotations

import collections
import random
import time
from typing import Any, Callable

import attrs

from sanspi.attack import rdma
from sanspi.attack.host import ATTACK_SOCKET
from sanspi.attack.world import AttackWorld
from sanspi.conform.world import Divergence, Logged, Ref
from sanspi.model.constants import KIND_RDMA, MEM_READ, MEM_READWRITE, MEM_WRITE, OK
from sanspi.model.state import Config

SESSION_ATTEMPTS = 150
#: One attempt in this many is a control: the descriptor the victim gave
#: this peer, in range, which must work (else the rig, not the victim, is
#: what refuses).
CONTROL_EVERY = 25
#: The share of attempts before which the victim and its honest peer do one
#: thing of the honest workload.
HONEST_SHARE = 0.35

#: One attempt in this many sees ``rdma resource show mr`` again (one call
#: costs about 0.3 s under emulation): the attacker's view of the MRs lags.
OBSERVE_EVERY = 25

PAGES = 4
PAGE = 4096
#: The hostile peer's own buffer: host 1's last two pages.
ATTACKER_ADDR, ATTACKER_LEN = 2 * PAGE, 2 * PAGE
#: The honest peer's buffer on each honest connection: host 1's first pages.
PEER_ADDR, PEER_LEN = 0, 2 * PAGE
HONEST_SOCKETS = (0, 1)

CLASSES = {
    "keys": "every key byte of the index of each MR and window of the victim (live, cached, revoked) and of the "
            "indexes next to it, at that object's address; the key actually issued first",
    "revoked": "the key of a window revoked by WSPDeregisterRdmaMemory, inside its range",
    "foreign": "the key of a live window bound on another connection of the victim (its honest peer's)",
    "outside": "the key of this connection's own window, or an MR's, one byte, one page and far outside its range",
    "rights": "this connection's own window, in range, with the access its flags do not grant",
    "empty": "READs and WRITEs of zero bytes with any key (IBA C9-88: executed without a key check; "
             "a success only if a byte changed)",
    "longest": "the longest READ and WRITE the peer can post (every SGE over its whole buffer) with its own "
               "window's key",
    "reuse": "a window's key and its MR's after the victim deregistered, freed the pages, mapped them again at "
             "the same address and registered them again",
    "replay": "a descriptor's key from an earlier connection, on the connection that replaced it",
}
WEIGHTS = {"keys": 38, "revoked": 8, "foreign": 8, "outside": 12, "rights": 6, "empty": 6, "longest": 6, "reuse": 8,
           "replay": 8}
CONTROL = "control"


def model_for(caps: Any) -> Config:
    """The model's bounds for a victim with these capabilities: as conform's
    ``model_config`` gives them, with the attacked connection as a third
    (conform.campaign itself is not imported: it brings Hypothesis, seconds
    of start-up under emulation)."""
    same = ("slots", "max_sge", "has_rdma_read", "has_cache", "descriptor_size", "max_startups")
    return Config(pages=PAGES, page_size=PAGE, sockets=ATTACK_SOCKET + 1, **{f: getattr(caps, f) for f in same})


class EndSession(Exception):
    """The session's state no longer matches the model: start a new one."""


@attrs.define
class Row:
    attempts: int = 0
    refused: int = 0  # the NIC refused it, as the model says it must
    allowed: int = 0  # the model allows it (a key the victim gave this peer, in range)
    done: int = 0  # zero bytes, completed without a check
    successes: int = 0  # done although the model refuses it
    changed: int = 0  # a byte of either host differed from the model's after it


@attrs.frozen
class Finding:
    """A success, a changed byte, or any other divergence, with what led to it."""

    kind: str  # "success", "changed bytes", "refused a legitimate access", "connection state", "honest workload", "leak"
    cls: str
    what: str
    message: str
    trace: tuple[str, ...] = ()


@attrs.frozen
class Obj:
    """A victim object whose key the attacker knows."""

    kind: str  # "MR" or "window"
    key: int
    va: int
    length: int
    flags: int  # its registration's: the attack uses an access they grant
    rid: int
    state: str  # "live", "cached" or "revoked"

    def name(self) -> str:
        return f"{self.state} {self.kind} of registration {self.rid} (key {self.key:#x})"


@attrs.define
class AttackResult:
    provider: str
    topology: str
    seed: int
    asked: int
    rows: dict[str, Row]
    findings: list[Finding]
    sessions: int = 0
    seconds: float = 0.0
    stopped: str | None = None  # why the run ended before its attempts
    keys_tried: dict[int, int] = attrs.field(factory=dict)  # index -> keys tried
    checks: int = 0  # connection comparisons made after attempts

    @property
    def attempts(self) -> int:
        return sum(r.attempts for c, r in self.rows.items() if c != CONTROL)

    @property
    def successes(self) -> int:
        return sum(r.successes for r in self.rows.values())

    @property
    def changed(self) -> int:
        return sum(r.changed for r in self.rows.values())

    @property
    def ok(self) -> bool:
        return not self.findings and self.stopped is None


class MrKeys:
    """The victim's MRs as ``rdma resource show mr`` lists them, matched to
    its registrations by length (the session gives every registration of
    the victim a length no other present one has)."""

    def __init__(self) -> None:
        self.pdn: int | None = None
        self._pdns: set[int] = set()
        self.known: dict[int, Obj] = {}  # MR index -> what it was last seen as

    def before_start(self) -> None:
        self._pdns = rdma.pdns()

    def after_start(self) -> None:
        new = rdma.pdns() - self._pdns
        if len(new) != 1:
            raise rdma.RdmaToolError(f"the victim's protection domain is not the one new PD ({sorted(new)})")
        self.pdn = new.pop()

    def refresh(self, regs: dict[int, tuple]) -> list[Obj]:
        """``regs``: length -> (rid, va, flags, kind, live) of the victim's
        present registrations. Every MR seen, and those gone (revoked)."""
        seen = {}
        for mr in rdma.mrs():
            reg = regs.get(mr.length) if mr.pdn == self.pdn else None
            if reg is not None:
                rid, va, flags, kind, live = reg
                state = "live" if live else "cached"
                seen[mr.index] = Obj("MR", mr.rkey or mr.lkey, va, mr.length, flags, rid, state)
        for index, obj in self.known.items():
            if index not in seen:
                seen[index] = attrs.evolve(obj, state="revoked")
        self.known = seen
        return list(seen.values())


class Session:
    """One World and what the attacker has learnt in it."""

    def __init__(self, attack: "Attack", world: AttackWorld, mr_keys: MrKeys | None) -> None:
        self.a, self.w, self.mr_keys = attack, world, mr_keys
        self.rng = attack.rng
        self.flags: dict[int, int] = {}  # victim registration -> its flags
        self.peer_handle: dict[int, int] = {}  # honest socket -> host 1's registration
        self.attacker = 0  # the hostile peer's registration on the current connection
        self.objects: dict[tuple, Obj] = {}
        self.first: collections.deque = collections.deque()  # (Obj, key): issued keys not tried yet
        self.pool: list[tuple[Obj, int]] = []  # (Obj, key): every other byte, drawn at random
        self.queued: set[tuple] = set()
        self.changed_since_seen = True
        self.seen_at = -OBSERVE_EVERY  # the attempt count at the last look at the MRs

    # --- steps through the World -----------------------------------------------------

    def step(self, name: str, **args: Any) -> Any:
        try:
            return self.w.step(name, **args)
        except Divergence as exc:
            self.a.finding("honest workload", "", f"{name}", str(exc), self.w)
            raise EndSession from None

    def start(self) -> None:
        if self.mr_keys:
            self.mr_keys.before_start()
        self.step("startup_ex", host=0, major=2, minor=2)
        if self.mr_keys:
            self.mr_keys.after_start()
        self.step("startup_ex", host=1, major=2, minor=2)
        for h in (0, 1):
            self.step("alloc", host=h, page=0, npages=PAGES)
        # what the hostile peer WRITEs: never zeros, so a write that lands shows
        self.step("app_write", host=1, addr=ATTACKER_ADDR, length=ATTACKER_LEN, seed=self.rng.randrange(1 << 16))
        for s in (*HONEST_SOCKETS, ATTACK_SOCKET):
            self.step("connect", conn=s)
        self.register_attacker()

    def register_attacker(self) -> None:
        st = self.step("register_memory", host=1, sock=ATTACK_SOCKET, addr=ATTACKER_ADDR, length=ATTACKER_LEN,
                       flags=MEM_READWRITE)
        self.attacker = st.result

    def reconnect(self) -> None:
        """The attacked connection, closed and connected again (a switch
        closes a failed connection), with the hostile peer's buffer."""
        self.step("close", conn=ATTACK_SOCKET)
        self.step("connect", conn=ATTACK_SOCKET)
        self.register_attacker()
        self.changed_since_seen = True  # the close released the victim's registrations on it

    # --- the victim's registrations ----------------------------------------------------------

    def slots(self, kind: int | None = None, sock: int | None = None, live: bool | None = None) -> list:
        return [sl for sl in self.w.model.state.hosts[0].slots if sl.used and (kind is None or sl.kind == kind)
                and (sock is None or sl.sock == sock) and (live is None or (sl.refs > 0) == live)]

    def span(self, within: tuple[int, int] | None = None) -> tuple[int, int]:
        """A victim buffer whose length no present registration has."""
        lo, hi = within or (0, PAGES * PAGE)
        taken = {sl.length for sl in self.slots()}
        while True:
            length = self.rng.randrange(8, min(2112, hi - lo))
            if length not in taken:
                return lo + self.rng.randrange(0, hi - lo - length + 1), length

    def make_room(self) -> None:
        """Keep two free slots: release a cached registration by freeing its
        pages (the switch's cache callback), after deregistering what is
        live there, then map the pages again and fill them."""
        while len(self.slots()) > self.w.cfg.slots - 3:
            victim = self.rng.choice(self.slots())
            first, last = victim.addr // PAGE, (victim.addr + victim.length - 1) // PAGE
            self.release_pages(first, last - first + 1)

    def release_pages(self, page: int, npages: int) -> None:
        lo, hi = page * PAGE, (page + npages) * PAGE
        for sl in self.slots(live=True):
            if sl.addr < hi and lo < sl.addr + sl.length:
                for _ in range(sl.refs):
                    self.deregister(sl)
        self.step("free", host=0, page=page, npages=npages)
        self.step("alloc", host=0, page=page, npages=npages)
        self.changed_since_seen = True

    def deregister(self, sl: Any) -> None:
        name = "deregister_rdma_memory" if sl.kind == KIND_RDMA else "deregister_memory"
        self.step(name, host=0, sock=sl.sock, **{"desc" if sl.kind == KIND_RDMA else "handle": Ref("issued", sl.rid)})
        self.changed_since_seen = True

    def expose(self, sock: int, span: tuple[int, int] | None = None, flags: int | None = None) -> int:
        """The victim registers a buffer for RDMA on ``sock``: its id (0: refused)."""
        self.make_room()
        addr, length = span or self.span()
        flags = flags or self.rng.choice((MEM_READ, MEM_WRITE, MEM_READWRITE))
        st = self.step("register_rdma_memory", host=0, sock=sock, addr=addr, length=length, flags=flags, desc_len=32)
        self.changed_since_seen = True
        if st.status == OK:
            self.flags[st.result] = flags
            return st.result
        return 0

    def live_descriptor(self, sock: int) -> int:
        """A live descriptor of the victim on ``sock``, made if there is none."""
        rids = [sl.rid for sl in self.slots(KIND_RDMA, sock, live=True)]
        return self.rng.choice(rids) if rids else self.expose(sock)

    # --- the honest workload ------------------------------------------------------------------

    def honest(self) -> None:
        """One thing the victim and its honest peer do between attempts."""
        r = self.rng.random()
        sock = self.rng.choice(HONEST_SOCKETS)
        if r < 0.45:
            self.peer_uses(sock, self.live_descriptor(sock))
        elif r < 0.6:
            live = self.slots(KIND_RDMA, live=True)
            if live:
                self.deregister(self.rng.choice(live))
        elif r < 0.75:
            self.make_room()
            addr, length = self.span()
            self.step("register_memory", host=0, sock=sock, addr=addr, length=length,
                      flags=self.rng.choice((MEM_READ, MEM_WRITE, MEM_READWRITE)))
            self.changed_since_seen = True
        elif r < 0.85:
            page = self.rng.randrange(PAGES)
            self.release_pages(page, 1)
        else:
            addr, length = self.span()
            length = min(length, 256)  # the model fills byte by byte
            self.step("app_write", host=0, addr=addr, length=length, seed=self.rng.randrange(1 << 16))

    def peer_uses(self, sock: int, rid: int) -> None:
        """The honest peer reads or writes the victim's buffer ``rid`` as the descriptor allows."""
        target = self.w.live_rdma(rid)
        if target is None:
            return
        if sock not in self.peer_handle:
            self.peer_handle[sock] = self.step("register_memory", host=1, sock=sock, addr=PEER_ADDR, length=PEER_LEN,
                                               flags=MEM_READWRITE).result
        n = self.rng.randrange(1, min(target.length, PEER_LEN) + 1)
        offset = self.rng.randrange(0, target.length - n + 1)
        write = bool(target.flags & MEM_WRITE) and (not target.flags & MEM_READ or self.rng.random() < 0.5)
        self.step("rdma_write" if write else "rdma_read", host=1, sock=sock,
                  sges=((n, PEER_ADDR + self.rng.randrange(0, PEER_LEN - n + 1), Ref("issued", self.peer_handle[sock])),),
                  desc=Ref("issued", rid), offset=offset)

    # --- what the attacker knows -----------------------------------------------------------------

    def refresh(self) -> list[Obj]:
        """Every victim object whose key is known: windows from the descriptors
        the victim issued, MRs (rxe) from ``rdma resource show mr``."""
        base = self.w.addr(0, 0)
        found = []
        for rid, (key, va, length) in self.w.descriptors().items():
            live = self.w.live_rdma(rid) is not None
            found.append(Obj("window", key, va, length, self.flags.get(rid, MEM_READWRITE), rid,
                             "live" if live else "revoked"))
        due = self.a.result.attempts >= self.seen_at + OBSERVE_EVERY or not (self.first or self.pool)
        if self.mr_keys is not None and self.changed_since_seen and due:
            self.seen_at = self.a.result.attempts
            regs = {sl.length: (sl.rid, base + sl.addr, sl.flags, sl.kind, sl.refs > 0) for sl in self.slots()}
            self.mr_keys.refresh(regs)
            self.changed_since_seen = False
        found += list(self.mr_keys.known.values()) if self.mr_keys is not None else []
        for obj in found:
            ident = (obj.kind, obj.key >> 8, obj.rid)
            self.objects[ident] = obj
            if ident not in self.queued:
                self.queued.add(ident)
                self.first.append((ident, obj.key))
                index = obj.key >> 8
                self.pool += [(ident, (i << 8) | b) for i in (index - 1, index, index + 1) if i > 0
                              for b in range(256) if (i << 8) | b != obj.key]
        return found

    def next_key(self) -> tuple[Obj, int] | None:
        if self.first:
            ident, key = self.first.popleft()
            return self.objects[ident], key
        if self.pool:
            i = self.rng.randrange(len(self.pool))
            self.pool[i], self.pool[-1] = self.pool[-1], self.pool[i]
            ident, key = self.pool.pop()
            return self.objects[ident], key
        return None

    # --- attempts ------------------------------------------------------------------------------

    def attacker_sges(self, length: int) -> tuple:
        """The hostile peer's buffer as SGEs of at most its size, for ``length`` bytes."""
        ref, out, left = Ref("issued", self.attacker), [], length
        while left > 0:
            n = min(left, ATTACKER_LEN)
            out.append((n, ATTACKER_ADDR, ref))
            left -= n
        return tuple(out)

    def granted(self, flags: int) -> bool:
        """An access ``flags`` grant (True: WRITE), the most harmful one first:
        what the peer may do is what it would overstep."""
        return bool(flags & MEM_WRITE) and (not flags & MEM_READ or self.rng.random() < 0.5)

    def attempt(self, cls: str, write: bool, key: int, va: int, length: int, what: str) -> None:
        """One raw READ or WRITE, judged; the connection mended if it failed."""
        row = self.a.rows[cls]
        row.attempts += 1
        if cls == "keys":
            tried = self.a.result.keys_tried
            tried[key >> 8] = tried.get(key >> 8, 0) + 1
        args = dict(write=write, rkey=key, va=va, cls=cls, what=what)
        try:
            if length:
                step = self.w.step("raw", sges=self.attacker_sges(length), **args)
            else:
                step = self.w.step("raw_empty", **args)
        except Divergence as exc:
            judged = self.w.log[-1].status is not None  # the outcome passed; the bytes did not
            if judged:
                row.changed += 1
                self.a.finding("changed bytes", cls, what, str(exc), self.w)
            elif self.w.last is not None and self.w.last.ok:
                row.successes += 1
                self.a.finding("success", cls, what, str(exc), self.w)
            else:
                self.a.finding("refused a legitimate access", cls, what, str(exc), self.w)
            raise EndSession from None
        done = self.w.last.ok
        if not length:
            row.done += done
            row.refused += not done
        elif step.status == OK:
            row.allowed += 1
        else:
            row.refused += 1
        if not done and not length:
            self.reconnect()  # a refused zero-byte request: the model has no step for it
        self.check_connections(cls, what)
        if not done and length:
            self.reconnect()

    def check_connections(self, cls: str, what: str) -> None:
        self.a.result.checks += 1
        try:
            self.w.compare_connections()
        except Divergence as exc:
            self.a.finding("connection state", cls, what, str(exc), self.w)
            raise EndSession from None

    def own_window(self) -> Any:
        """A live descriptor the victim gave the hostile peer: its model slot."""
        rid = self.live_descriptor(ATTACK_SOCKET)
        return self.w.live_rdma(rid)

    def control(self) -> None:
        sl = self.own_window()
        if sl is None:
            return
        key = self.w.descriptors()[sl.rid][0]
        n = self.rng.randrange(1, min(sl.length, ATTACKER_LEN) + 1)
        at = self.w.addr(0, sl.addr) + self.rng.randrange(0, sl.length - n + 1)
        self.attempt(CONTROL, self.granted(sl.flags), key, at, n, f"its own window {key:#x}, in range")

    def keys(self) -> None:
        self.refresh()
        item = self.next_key()
        if item is None:
            self.expose(self.rng.choice(HONEST_SOCKETS))
            self.refresh()
            item = self.next_key()
        obj, key = item
        self.attempt("keys", self.granted(obj.flags), key, obj.va, min(8, obj.length),
                     f"key {key:#x} (index {key >> 8:#x}) at the {obj.name()}")

    def revoked(self) -> None:
        """Half the time a window this peer was given and that the victim has
        just revoked; else any revoked window of the victim."""
        dead = [o for o in self.refresh() if o.kind == "window" and o.state == "revoked"]
        if not dead or self.rng.random() < 0.5:
            rid = self.expose(ATTACK_SOCKET)
            sl = self.w.live_rdma(rid)
            if sl is None:
                return
            self.deregister(sl)
            dead = [o for o in self.refresh() if o.rid == rid and o.kind == "window"]
        obj = self.rng.choice(dead)
        n = self.rng.randrange(1, min(obj.length, 64) + 1)
        self.attempt("revoked", self.granted(obj.flags), obj.key, obj.va + self.rng.randrange(0, obj.length - n + 1), n,
                     f"the {obj.name()}, in its range")

    def foreign(self) -> None:
        sock = self.rng.choice(HONEST_SOCKETS)
        rid = self.live_descriptor(sock)
        sl = self.w.live_rdma(rid)
        if sl is None:
            return
        key = self.w.descriptors()[rid][0]
        n = self.rng.randrange(1, min(sl.length, 64) + 1)
        self.attempt("foreign", self.granted(sl.flags), key,
                     self.w.addr(0, sl.addr) + self.rng.randrange(0, sl.length - n + 1), n,
                     f"the live window {key:#x} of connection {sock}, in its range")

    #: Where "outside" aims, relative to a range [start, end): (name, address, length).
    OUTSIDE = (
        ("one byte before", lambda s, e: s - 1, 8),
        ("one byte past the end", lambda s, e: e - 7, 8),
        ("one page before", lambda s, e: s - PAGE, 8),
        ("one page past the end", lambda s, e: e + PAGE - 8, 8),
        ("far below", lambda s, e: s - 2**40, 8),
        ("far above", lambda s, e: e + 2**40, 8),
        ("across the top of the address space", lambda s, e: 2**64 - 8, 16),
    )

    def outside(self) -> None:
        mrs = [o for o in self.refresh() if o.kind == "MR" and o.state != "revoked"]
        if mrs and self.rng.random() < 0.3:
            obj = self.rng.choice(mrs)
            key, start, end, flags, name = obj.key, obj.va, obj.va + obj.length, obj.flags, obj.name()
        else:
            sl = self.own_window()
            if sl is None:
                return
            key = self.w.descriptors()[sl.rid][0]
            start, end, flags = self.w.addr(0, sl.addr), self.w.addr(0, sl.addr + sl.length), sl.flags
            name = f"live window {key:#x} of this connection"
        where, at, n = self.rng.choice(self.OUTSIDE)
        self.attempt("outside", self.granted(flags), key, at(start, end) % 2**64, n, f"the {name}, {where}")

    def rights(self) -> None:
        one = [sl for sl in self.slots(KIND_RDMA, ATTACK_SOCKET, live=True) if sl.flags != MEM_READWRITE]
        rid = self.rng.choice(one).rid if one else self.expose(ATTACK_SOCKET, flags=self.rng.choice((MEM_READ, MEM_WRITE)))
        sl = self.w.live_rdma(rid)
        if sl is None:
            return
        key = self.w.descriptors()[rid][0]
        n = self.rng.randrange(1, min(sl.length, 64) + 1)
        write = sl.flags == MEM_READ
        self.attempt("rights", write, key, self.w.addr(0, sl.addr) + self.rng.randrange(0, sl.length - n + 1), n,
                     f"a {'WRITE' if write else 'READ'} through the live window {key:#x} of this connection, "
                     f"which grants only {'MEM_READ' if write else 'MEM_WRITE'}")

    def empty(self) -> None:
        objs = self.refresh()
        if objs and self.rng.random() < 0.8:
            obj = self.rng.choice(objs)
            key, va, name = obj.key, obj.va, obj.name()
        else:
            key, va, name = self.rng.randrange(1, 2**32), self.rng.randrange(2**64), "a random key and address"
        self.attempt("empty", self.rng.random() < 0.5, key, va, 0, f"zero bytes, {name}")

    def longest(self) -> None:
        sl = self.own_window()
        if sl is None:
            return
        key = self.w.descriptors()[sl.rid][0]
        n = self.w.cfg.max_sge * ATTACKER_LEN
        self.attempt("longest", self.granted(sl.flags), key, self.w.addr(0, sl.addr), n,
                     f"{n} bytes ({self.w.cfg.max_sge} SGEs of {ATTACKER_LEN}) at the live window {key:#x} of this connection")

    def reuse(self) -> None:
        page = self.rng.randrange(PAGES)
        lo = page * PAGE
        span = self.span((lo, lo + PAGE))
        flags = self.rng.choice((MEM_WRITE, MEM_READWRITE, MEM_READ))
        rid = self.expose(ATTACK_SOCKET, span, flags)
        if not rid:
            return
        old = [o for o in self.refresh() if o.rid == rid]
        self.deregister(self.w.live_rdma(rid))
        self.release_pages(page, 1)
        self.expose(ATTACK_SOCKET, span, flags)
        self.refresh()
        for obj in old:
            n = min(8, obj.length)
            self.attempt("reuse", self.granted(obj.flags), obj.key, obj.va, n,
                         f"the {obj.kind} key {obj.key:#x} of registration {rid} after free and re-registration at "
                         f"{obj.va:#x}")

    def replay(self) -> None:
        rid = self.expose(ATTACK_SOCKET)
        sl = self.w.live_rdma(rid)
        if sl is None:
            return
        key, va, length = self.w.descriptors()[rid]
        span, flags = (sl.addr, sl.length), sl.flags
        self.reconnect()
        self.expose(ATTACK_SOCKET, span, flags)
        n = min(8, length)
        self.attempt("replay", self.granted(flags), key, va, n,
                     f"window key {key:#x} of registration {rid}, from the previous connection")


class Attack:
    """The whole run: sessions until the attempts are made (or the time is up)."""

    def __init__(self, factory: Callable[[], tuple[Any, Any]], provider: str, topology: str,
                 decode: Callable[[bytes], Any], attempts: int, seed: int, time_limit_s: float,
                 observe_mrs: bool, leaks_here: Callable[[], dict] | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        self.factory, self.decode = factory, decode
        self.rng = random.Random(seed)
        self.time_limit_s, self.observe_mrs, self.leaks_here = time_limit_s, observe_mrs, leaks_here
        self.progress = progress
        self.rows = {c: Row() for c in (*CLASSES, CONTROL)}
        self.result = AttackResult(provider, topology, seed, attempts, self.rows, [])
        self.mr_keys = MrKeys() if observe_mrs else None

    def finding(self, kind: str, cls: str, what: str, message: str, world: AttackWorld | None) -> None:
        trace = tuple(_shown(s) for s in world.log[-14:]) if world is not None else ()
        self.result.findings.append(Finding(kind, cls, what, message.splitlines()[0], trace))

    def next_class(self) -> str:
        """The class furthest below its share of the attempts so far."""
        made = self.result.attempts + 1
        total = sum(WEIGHTS.values())
        return max(WEIGHTS, key=lambda c: (WEIGHTS[c] * made / total - self.rows[c].attempts, -list(WEIGHTS).index(c)))

    def run(self) -> AttackResult:
        start = time.perf_counter()
        try:
            while self.result.attempts < self.result.asked:
                if time.perf_counter() - start > self.time_limit_s:
                    self.result.stopped = (f"the time limit ({self.time_limit_s:.0f} s) came after "
                                           f"{self.result.attempts} of {self.result.asked} attempts")
                    break
                try:
                    self.session(start)
                except TimeoutError as exc:
                    # a completion that never came (the hostile peer's own,
                    # or the victim's) is the lab failing, not a finding: the
                    # run stops and reports what it did, and is not ok
                    self.result.stopped = (f"a lab failure after {self.result.attempts} of {self.result.asked} "
                                           f"attempts: {type(exc).__name__}: {exc}")
                    break
        finally:
            self.result.seconds = time.perf_counter() - start
        return self.result

    def session(self, start: float) -> None:
        before = self.leaks_here() if self.leaks_here else None
        pair = self.factory()
        caps = pair[0].capabilities
        world = AttackWorld(pair, model_for(caps), decode=self.decode)
        s = Session(self, world, self.mr_keys)
        self.result.sessions += 1
        made = 0
        try:
            s.start()
            while made < SESSION_ATTEMPTS and self.result.attempts < self.result.asked \
                    and time.perf_counter() - start <= self.time_limit_s:
                if self.rng.random() < HONEST_SHARE:
                    s.honest()
                if self.rows[CONTROL].attempts * CONTROL_EVERY < self.result.attempts:
                    s.control()
                else:
                    cls = self.next_class()
                    getattr(s, cls)()
                    made += 1
                if self.progress:
                    self.progress(f"attack: {self.result.attempts} attempts, {self.result.successes} successes")
        except EndSession:
            pass
        finally:
            for p in world.providers:
                p.shutdown()
            self.check_leaks(before, world)

    def check_leaks(self, before: dict | None, world: AttackWorld) -> None:
        leaked = dict(world.providers[1].leaked())
        if before is not None:
            after = self.leaks_here()
            leaked.update({f"{k} (victim's guest)": (before[k], after[k]) for k in before if after[k] != before[k]})
        if leaked:
            said = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in sorted(leaked.items()))
            self.finding("leak", "", "after the session's shutdown", f"resources not back at the baseline: {said}", None)


def _shown(s: Logged) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in s.args.items())
    return f"{s.name}({args})" + ("" if s.status is None else f" -> {s.status}")
