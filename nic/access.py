"""The verbs access check as InfiniBand states it: a small executable model
that ``nic/lockstep.py`` runs against rxe, call by call.

The world is one owner and one requester. The owner's buffer is reached
through memory regions (MRs) registered over parts of it and type-2 memory
windows bound over sub-ranges of those MRs; the owner has two protection
domains and three RC connections to the requester, 0 and 1 in PD 0 and 2
in PD 1 (``CONN_PD``). Keys are the values the NIC handed out; the model
only compares them. The rules, one line each below:

* a remote READ or WRITE of at least one byte names, by its key, a valid
  MR that has a remote right and whose rkey it is, or a bound window whose
  key it is; a deregistered MR or an invalidated or deallocated window
  names nothing (key, state);
* that object is in the connection's PD (PD);
* a type-2 window answers only on the QP it was bound on (QP);
* the object grants the access (rights);
* the bytes lie in the object's range: a window's own range (range);
* a READ or WRITE of zero bytes checks nothing and moves nothing (IBA
  C9-88);
* a refused access leaves both ends of its connection in the error state
  (lab/RXE-FACTS.md; the provider's CONN-01 rests on it);
* a bind needs an allocated, unbound window, the window's and the MR's PD
  that of the connection, a valid MR with MW_BIND (and LOCAL_WRITE when
  the window grants REMOTE_WRITE), and a non-empty range inside the MR; a
  failed bind leaves the owner's end in the error state (its work request
  completed in error);
* a local invalidate of a bound window's key, on the QP it is bound to,
  unbinds it at once.

``deviations`` switches off, at the one line concerned, a rule that rxe
6.1 breaks (``DEVIATIONS``): the lockstep first runs without any, and a
divergence that a switch explains is that named deviation.
"""

from __future__ import annotations

import attrs

#: ibv_access_flags bits, as the verbs API numbers them.
LOCAL_WRITE, REMOTE_WRITE, REMOTE_READ, MW_BIND = 1, 2, 4, 16

#: The owner's protection domain of each connection.
CONN_PD = (0, 0, 1)

#: Rules rxe 6.1 breaks, by name: what it does instead, and where.
DEVIATIONS = {
    "window-range": "an access through a type-2 window is checked against the range of the window's MR, "
                    "not the window's own (drivers/infiniband/sw/rxe/rxe_resp.c, check_rkey: "
                    "mr_check_range(mr, va + qp->resp.offset, resid))",
    "bind-mr-pd": "a window binds over an MR of another protection domain (drivers/infiniband/sw/rxe/"
                  "rxe_mw.c, rxe_check_bind_mw compares the QP's PD with the window's, never the MR's)",
}


@attrs.frozen
class Region:
    """A memory region: ``rkey`` is 0 when it has no remote right (no remote key)."""

    pd: int
    addr: int
    length: int
    access: int
    rkey: int
    valid: bool = True


@attrs.frozen
class Window:
    """A type-2 memory window; ``qp`` is (connection, generation) while bound."""

    pd: int
    key: int
    bound: bool = False
    qp: tuple = ()
    mr: int = -1
    addr: int = 0
    length: int = 0
    access: int = 0
    valid: bool = True


@attrs.frozen
class Outcome:
    """One operation's result: done or refused (``why``: the rule), a read's bytes."""

    ok: bool
    why: str = ""
    data: bytes = b""


@attrs.define
class AccessModel:
    size: int  # bytes of the owner's buffer; addresses are offsets into it
    deviations: frozenset = frozenset()
    mrs: dict = attrs.field(factory=dict)
    mws: dict = attrs.field(factory=dict)
    #: (owner's end up, requester's end up) of each connection
    up: list = attrs.field(factory=lambda: [[True, True] for _ in CONN_PD])
    #: each connection's QP generation (a reconnect makes new QPs)
    gen: list = attrs.field(factory=lambda: [0 for _ in CONN_PD])
    mem: bytearray = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        if self.mem is None:
            self.mem = bytearray(self.size)

    def copy(self, deviations: frozenset | None = None) -> "AccessModel":
        """An independent copy (objects are immutable: the tables are copied,
        not their entries), with other ``deviations`` if given."""
        return AccessModel(self.size, self.deviations if deviations is None else deviations, dict(self.mrs),
                           dict(self.mws), [list(u) for u in self.up], list(self.gen), bytearray(self.mem))

    # --- objects ----------------------------------------------------------------

    def reg_mr(self, h: int, pd: int, addr: int, length: int, access: int, rkey: int) -> None:
        self.mrs[h] = Region(pd, addr, length, access, rkey)

    def dereg_mr(self, h: int) -> Outcome:
        """Deregistration fails while a window is bound to the MR (ibv_dereg_mr)."""
        if any(w.valid and w.bound and w.mr == h for w in self.mws.values()):
            return Outcome(False, "a window is bound to it")
        self.mrs[h] = attrs.evolve(self.mrs[h], valid=False)
        return Outcome(True)

    def alloc_mw(self, h: int, pd: int, key: int) -> None:
        self.mws[h] = Window(pd, key)

    def dealloc_mw(self, h: int) -> None:
        self.mws[h] = attrs.evolve(self.mws[h], valid=False, bound=False)

    def reconnect(self, conn: int) -> None:
        """New QPs at both ends: up, and no window is bound to them."""
        self.up[conn] = [True, True]
        self.gen[conn] += 1

    # --- the owner's work requests ------------------------------------------------

    def bind(self, h: int, mr_h: int, conn: int, addr: int, length: int, access: int, key: int) -> Outcome:
        """Bind window ``h`` over [addr, addr+length) of MR ``mr_h`` on connection
        ``conn``'s QP; the new key keeps the window's index, its low byte is ``key``'s."""
        w, mr, pd = self.mws[h], self.mrs[mr_h], CONN_PD[conn]
        why = next((rule for rule, broken in (
            ("window", not w.valid or w.bound),
            ("pd", w.pd != pd or (mr.pd != pd and "bind-mr-pd" not in self.deviations)),
            ("mr state", not mr.valid),
            ("mr rights", not mr.access & MW_BIND
             or (access & REMOTE_WRITE and not mr.access & LOCAL_WRITE)),
            ("range", length < 1 or addr < mr.addr or addr + length > mr.addr + mr.length),
        ) if broken), "")
        if why:
            self.up[conn][0] = False
            return Outcome(False, why)
        self.mws[h] = attrs.evolve(w, key=(w.key & ~0xFF) | (key & 0xFF), bound=True, qp=(conn, self.gen[conn]),
                                   mr=mr_h, addr=addr, length=length, access=access)
        return Outcome(True)

    def invalidate(self, h: int, conn: int, key: int) -> Outcome:
        """A local invalidate of ``key`` on connection ``conn``'s QP."""
        w = self.mws[h]
        if not (w.valid and w.bound and w.key == key and w.qp == (conn, self.gen[conn])):
            self.up[conn][0] = False
            return Outcome(False, "window")
        self.mws[h] = attrs.evolve(w, bound=False)
        return Outcome(True)

    # --- the requester's READ and WRITE -----------------------------------------------

    def named(self, key: int) -> tuple[Region | Window, bool] | None:
        """The valid object ``key`` names: (object, is a window), or None."""
        for w in self.mws.values():
            if w.valid and w.bound and w.key == key:
                return w, True
        for mr in self.mrs.values():
            if mr.valid and mr.access & (REMOTE_READ | REMOTE_WRITE) and mr.rkey == key:
                return mr, False
        return None

    def refusal(self, conn: int, need: int, key: int, addr: int, length: int) -> str:
        """The rule that refuses this access, or "" if it is allowed."""
        if length == 0:
            return ""  # C9-88: neither key nor address is looked at
        named = self.named(key)
        if named is None:
            return "key"
        obj, window = named
        if obj.pd != CONN_PD[conn]:
            return "pd"
        if window and obj.qp != (conn, self.gen[conn]):
            return "qp"
        if not obj.access & need:
            return "rights"
        lo, n = obj.addr, obj.length
        if window and "window-range" in self.deviations:
            lo, n = self.mrs[obj.mr].addr, self.mrs[obj.mr].length
        if not (lo <= addr and addr + length <= lo + n):
            return "range"
        return ""

    def access(self, conn: int, write: bool, key: int, addr: int, length: int, data: bytes = b"") -> Outcome:
        """An RDMA WRITE of ``data`` (or a READ of ``length`` bytes) at ``addr``."""
        why = self.refusal(conn, REMOTE_WRITE if write else REMOTE_READ, key, addr, length)
        if why:
            self.up[conn] = [False, False]
            return Outcome(False, why)
        if length == 0:
            return Outcome(True)
        if write:
            self.mem[addr:addr + length] = data
            return Outcome(True)
        return Outcome(True, data=bytes(self.mem[addr:addr + length]))
