"""The Hypothesis state machine that drives a World: every SPI call and
environment event is a rule; after each step the World has compared results
and bytes.

Generation aims at what makes a bug visible, not only at status codes
(conform/coverage.py lists the classes a campaign must reach):

* bytes that really move: before every transfer the sources are filled with
  fresh, position-dependent bytes (an ``app_write`` step), so a transfer
  that moves nothing, too little, in the wrong order or from the wrong place
  leaves the model's bytes and the provider's apart;
* every buffer count from 1 to ``max_sge``, buffers and targets that cross a
  page, every registration flag on both sides;
* aliasing: handles and descriptors already issued (live, cached, dead, the
  other host's, another connection's), forged at any byte, of other
  lengths;
* the edges of the SPI's integer types (DWORD offsets and lengths near
  2**31 and 2**32, ``offset + length`` past 2**32, pointers near 2**64 and
  2**32 above a mapped one), and the exact ends of buffers and targets;
* the long set-ups random draws rarely line up: directed rules.

A rule that finds nothing to do returns without a step: ``assume`` there
would throw the whole example away, not just the step.

The machine is a module-level class; ``make_machine`` binds it to a
provider factory and a model configuration by subclassing (Hypothesis
instantiates the class itself, once per example).
"""

from __future__ import annotations

import itertools
from typing import Callable, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from sanspi.conform.coverage import DWORD, POINTER
from sanspi.conform.world import Ref, World
from sanspi.impl.interface import ProviderFactory
from sanspi.model.constants import (
    CONNECTED, FN_UNKNOWN, MEM_READ, MEM_READWRITE, MEM_WRITE, RECV_DONE, RECV_IDLE, RECV_POSTED,
)
from sanspi.model.state import Config

FLAGS = (MEM_READ, MEM_WRITE, MEM_READWRITE)
#: Lengths and offsets on the edges of a DWORD (and just outside one).
DWORD_EDGES = (2**31 - 1, 2**31, 2**31 + 1, DWORD - 256, DWORD - 1, DWORD, DWORD + 1, -1)
EDGES = [-1, 0, 1, 7, 8, 4095, 4096, 4097, 2**32 - 1, 2**40]


def often(usual, rare):
    """``usual`` seven times in eight, else ``rare`` (``a | b`` would be half and half)."""
    return st.integers(0, 7).flatmap(lambda r: rare if r == 0 else usual)


class Lockstep(RuleBasedStateMachine):
    """The lockstep campaign's rules. ``factory``, ``cfg`` and ``on_world``
    are bound by ``make_machine``."""

    factory: ClassVar[ProviderFactory]
    cfg: ClassVar[Config]
    on_world: ClassVar[Callable[[World], None] | None] = None

    def __init__(self):
        super().__init__()
        self.world = World(type(self).factory(), self.cfg)
        self.seeds = itertools.count(1)  # fill patterns: a fresh seed for every buffer filled
        if type(self).on_world:
            type(self).on_world(self.world)

    def teardown(self):
        for p in self.world.providers:
            p.shutdown()

    # --- helpers over the model's state (what the switch knows) -------------------

    @property
    def state(self):
        return self.world.model.state

    def mapped_ranges(self, host):
        ps, host_state = self.cfg.page_size, self.state.hosts[host]
        return [(p * ps, ps) for p, m in enumerate(host_state.mapped) if m]

    def mapped(self, host, addr, length):
        ps, m = self.cfg.page_size, self.state.hosts[host].mapped
        if length < 1 or addr < 0 or addr + length > self.cfg.memsize:
            return False
        return all(m[p] for p in range(addr // ps, (addr + length - 1) // ps + 1))

    def boundaries(self, host):
        """Page boundaries with both neighbouring pages mapped."""
        m, ps = self.state.hosts[host].mapped, self.cfg.page_size
        return [p * ps for p in range(1, len(m)) if m[p - 1] and m[p]]

    def slots(self, host, kind, sock=None):
        return [sl for sl in self.state.hosts[host].slots
                if sl.used and sl.kind == kind and (sock is None or sl.sock == sock)]

    def live(self, host, kind, sock=None, grant=0):
        return [sl for sl in self.slots(host, kind, sock) if sl.refs > 0 and sl.flags & grant == grant]

    def live_on(self, host, page, npages, but=None):
        """Does a live registration of ``host`` (other than ``but``) touch
        these pages? The switch frees no such page (MEM-04)."""
        lo, hi = page * self.cfg.page_size, (page + npages) * self.cfg.page_size
        return any(sl.used and sl.refs > 0 and sl is not but and sl.addr < hi and lo < sl.addr + sl.length
                   for sl in self.state.hosts[host].slots)

    def base(self, host):
        return self.world.providers[host].memory.base

    def wild_address(self, data, host):
        """An address on a pointer edge: near 2**64 (absolute, so ``addr +
        length`` wraps a 64-bit pointer), or 2**32 above a mapped byte (a
        provider that truncates pointers to 32 bits aliases it)."""
        ranges = self.mapped_ranges(host)
        if ranges and data.draw(st.booleans()):
            a, n = data.draw(st.sampled_from(ranges))
            return data.draw(st.integers(a, a + n - 1)) + DWORD
        return POINTER - self.base(host) - data.draw(st.sampled_from([1, 8, 4096]))

    def address(self, data, host):
        ranges = self.mapped_ranges(host)
        regs = [sl for sl in self.state.hosts[host].slots if sl.used]
        pick = data.draw(st.integers(0, 19))
        if pick == 0 or not ranges:
            return data.draw(st.sampled_from(EDGES))
        if pick == 1:
            return self.wild_address(data, host)
        options = [st.sampled_from(ranges).flatmap(lambda r: st.integers(r[0], r[0] + r[1] - 1)),
                   st.sampled_from([a for a, _ in ranges])]
        if regs:
            options.append(st.sampled_from([sl.addr for sl in regs] + [sl.addr + sl.length for sl in regs]))
        return data.draw(st.one_of(*options))

    def ref(self, data, host, descriptor):
        """A handle (or descriptor): mostly issued ones, some garbage, and
        descriptors forged at any byte or of another length."""
        mine = [rid for rid, (h, d) in self.world.issued.items() if d == descriptor]
        kinds = ["issued"] * 6 + ["garbage"] + (["forged", "resized"] if descriptor else [])
        how = data.draw(st.sampled_from(kinds if mine else ["garbage"]))
        if how == "garbage":
            return Ref("garbage", data.draw(st.integers(0, 3)))
        rid = data.draw(st.sampled_from(sorted(mine)))
        if how in ("forged", "resized"):
            return self.spoiled(data, rid)
        return Ref("issued", rid)

    def spoiled(self, data, rid):
        """Descriptor ``rid`` forged at one byte, or made shorter or longer."""
        if data.draw(st.integers(0, 3)):
            at = data.draw(st.integers(0, self.cfg.descriptor_size - 1))
            return Ref("forged", rid, at, data.draw(st.sampled_from([0x01, 0x80, 0xFF, 0x10])))
        return Ref("resized", rid, data.draw(st.sampled_from([-1, 1, -10**6, 4096])))

    def fill(self, data, host, ranges):
        """Fill each range (the sources of a transfer) with fresh,
        position-dependent bytes: each buffer its own pattern, so a transfer
        that moves nothing, the wrong bytes, or buffers in the wrong order
        leaves a difference."""
        for addr, length in ranges:
            if self.mapped(host, addr, length):
                self.world.step("app_write", host=host, addr=addr, length=length, seed=next(self.seeds) % 251)

    def sges(self, data, host, sock, need):
        """WSABUFEX triples (length, address, handle), mostly inside this
        socket's local registrations; sometimes on the edges of a DWORD or a
        pointer."""
        regs = self.slots(host, 1, sock)
        if data.draw(st.integers(0, 7)):  # mostly live ones that grant the access needed
            regs = [sl for sl in regs if sl.refs > 0 and sl.flags & need] or regs
        count = data.draw(st.integers(1, self.cfg.max_sge) if data.draw(st.integers(0, 9)) else
                          st.sampled_from([0, self.cfg.max_sge + 1]))
        out = []
        for _ in range(count):
            pick = data.draw(st.integers(0, 15))
            if regs and pick >= 4:
                sl = data.draw(st.sampled_from(regs))
                a = data.draw(st.integers(sl.addr, sl.addr + sl.length - 1))
                n = data.draw(often(st.integers(1, sl.addr + sl.length - a), st.just(sl.addr + sl.length - a + 1)))
                out.append((n, a, Ref("issued", sl.rid)))
            elif regs and pick == 3:  # a length on a DWORD edge, in a live registration
                sl = data.draw(st.sampled_from(regs))
                out.append((data.draw(st.sampled_from(DWORD_EDGES)), sl.addr, Ref("issued", sl.rid)))
            elif regs and pick == 2:  # an address on a pointer edge, with a live handle
                sl = data.draw(st.sampled_from(regs))
                out.append((data.draw(st.sampled_from([1, 16])), self.wild_address(data, host),
                            Ref("issued", sl.rid)))
            else:
                out.append((data.draw(st.sampled_from([0, 1, 64])), self.address(data, host),
                            self.ref(data, host, descriptor=False)))
        return tuple(out)

    def socket(self, data):
        return data.draw(st.integers(0, self.cfg.sockets - 1) if data.draw(st.integers(0, 15)) else
                         st.sampled_from([-1, self.cfg.sockets]))

    def pieces(self, data, regs, total_room):
        """1 to max_sge buffers, each inside one of ``regs`` (live local
        registrations that grant what the transfer needs), together at most
        ``total_room`` bytes; a buffer crosses a page boundary when its
        registration does, half the time."""
        ps = self.cfg.page_size
        k = data.draw(st.integers(1, min(self.cfg.max_sge, total_room)))
        out, room = [], total_room
        for i in range(k):
            sl = data.draw(st.sampled_from(regs))
            most = min(sl.length, room - (k - i - 1))
            if most < 1:
                break
            n = data.draw(st.integers(1, most))
            lo, hi = sl.addr, sl.addr + sl.length - n
            edge = (sl.addr // ps + 1) * ps  # the first page boundary inside the registration, if any
            if lo < edge < sl.addr + sl.length and n > 1 and data.draw(st.booleans()):
                lo, hi = max(lo, edge - n + 1), min(hi, edge - 1)
            a = data.draw(st.integers(lo, hi)) if lo <= hi else sl.addr
            out.append((n, a, Ref("issued", sl.rid)))
            room -= n
        return tuple(out)

    def refusals(self, data, host, sock, sges, regs, need, room):
        """``sges`` (buffers of the live registrations ``regs``, granting
        ``need``) spoiled in each way one local check refuses, one list of
        buffers per way: a buffer's last byte past its registration, a
        handle that is no registration, a registration without the access
        needed (ACC-03), an empty buffer (RDMA-04), no buffers or one more
        than max_sge (RDMA-03). All of them, not one drawn: a refusal leaves
        the state as it was, and each way is a coverage target of each call
        (conform/coverage.py) that one draw in five left unreached in most
        60-example campaigns."""
        n, a, ref = sges[-1]
        sl = next(x for x in regs if x.rid == ref.rid)
        out = [sges[:-1] + ((n, sl.addr + sl.length - n + 1, ref),)]  # past the buffer
        n, a, _ = sges[0]
        out.append(((n, a, Ref("garbage", data.draw(st.integers(0, 3)))),) + sges[1:])  # no handle
        other = MEM_WRITE if need == MEM_READ else MEM_READ
        lacking = self.ensure(data, host, sock, 1, 0, exact=other)
        if lacking:  # no access
            out.append(self.pieces(data, lacking, room))
        n, a, ref = sges[0]
        out.append(((0, a, ref),) + sges[1:])  # empty
        out.append(() if data.draw(st.booleans()) else (sges[0],) * (self.cfg.max_sge + 1))  # count
        return out

    def ensure(self, data, host, sock, kind, grant, exact=None):
        """Live registrations of ``kind`` on ``host``'s ``sock`` granting
        ``grant`` (or with flags ``exact``); when there are none, one is
        registered first (on mapped memory, across a page boundary half the
        time), so the directed rules need not wait for random ones."""
        have = [sl for sl in self.live(host, kind, sock, grant) if exact is None or sl.flags == exact]
        if have or self.state.hosts[host].eps[sock].conn != CONNECTED:
            return have
        edges = self.boundaries(host)
        length = data.draw(st.integers(1, 256))
        if edges and data.draw(st.booleans()):
            b = data.draw(st.sampled_from(edges))
            addr = b - data.draw(st.integers(1, min(length, 200))) if length > 1 else b - 1
            length = max(length, b - addr + 1)
        else:
            ranges = self.mapped_ranges(host)
            if not ranges:
                return []
            start, size = data.draw(st.sampled_from(ranges))
            addr = data.draw(st.integers(start, start + size - length))
        flags = exact or data.draw(st.sampled_from([f for f in FLAGS if f & grant == grant]))
        if kind == 1:
            self.world.step("register_memory", host=host, sock=sock, addr=addr, length=length, flags=flags)
        else:
            self.world.step("register_rdma_memory", host=host, sock=sock, addr=addr, length=length, flags=flags,
                            desc_len=self.cfg.descriptor_size)
        return [sl for sl in self.live(host, kind, sock, grant) if exact is None or sl.flags == exact]

    # --- set-up ------------------------------------------------------------------------

    @initialize(data=st.data())
    def start(self, data):
        cfg, ps = self.cfg, self.cfg.page_size
        for h in (0, 1):
            self.world.step("startup_ex", host=h, major=2, minor=2)
            self.world.step("alloc", host=h, page=0, npages=data.draw(st.integers(min(2, cfg.pages - 1),
                                                                             cfg.pages - 1)))
        for conn in range(cfg.sockets):
            self.world.step("connect", conn=conn)
        # registrations to start from, so transfers have something to use: on
        # each host and socket a local buffer and an RDMA buffer, of every
        # flag, some across the boundary of pages 0 and 1
        for h in (0, 1):
            for sock in range(cfg.sockets):
                for kind in ("register_memory", "register_rdma_memory"):
                    if data.draw(st.integers(0, 7)) == 0:
                        continue
                    extra = {"desc_len": cfg.descriptor_size} if kind == "register_rdma_memory" else {}
                    length = data.draw(st.integers(1, 256))
                    if data.draw(st.integers(0, 2)) == 0 and self.boundaries(h):  # across the page boundary
                        addr = data.draw(st.integers(ps - length + 1, ps - 1)) if length > 1 else ps - 1
                        length = max(length, ps - addr + 1)
                    else:
                        addr = data.draw(st.integers(0, ps - 256))
                    self.world.step(kind, host=h, sock=sock, addr=addr, length=length,
                                    flags=data.draw(st.sampled_from(FLAGS)), **extra)

    # --- environment -------------------------------------------------------------------

    @rule(data=st.data())
    def alloc(self, data):
        host = data.draw(st.integers(0, 1))
        free = [p for p, m in enumerate(self.state.hosts[host].mapped) if not m]
        if not free:
            return
        page = data.draw(st.sampled_from(free))
        two = page + 1 < self.cfg.pages and not self.state.hosts[host].mapped[page + 1] and data.draw(st.booleans())
        self.world.step("alloc", host=host, page=page, npages=2 if two else 1)

    @rule(data=st.data())
    def free(self, data):
        host = data.draw(st.integers(0, 1))
        mapped = [p for p, m in enumerate(self.state.hosts[host].mapped) if m]
        if not mapped:
            return
        ps = self.cfg.page_size
        cached = [p for p in mapped for sl in self.state.hosts[host].slots
                  if sl.used and sl.refs == 0 and sl.addr < (p + 1) * ps and p * ps < sl.addr + sl.length]
        page = data.draw(st.sampled_from(cached) if cached and data.draw(st.booleans()) else st.sampled_from(mapped))
        if self.live_on(host, page, 1):  # the switch never frees memory it has registered (MEM-04)
            return
        self.world.step("free", host=host, page=page, npages=1)

    @rule(data=st.data())
    def app_write(self, data):
        host = data.draw(st.integers(0, 1))
        ranges = self.mapped_ranges(host)
        if not ranges:
            return
        start, size = data.draw(st.sampled_from(ranges))
        addr = data.draw(st.integers(start, start + size - 1))
        length = data.draw(st.integers(1, start + size - addr))
        self.world.step("app_write", host=host, addr=addr, length=length, seed=data.draw(st.integers(0, 255)))

    @rule(data=st.data())
    def connect_or_close(self, data):
        conn = data.draw(st.integers(0, self.cfg.sockets - 1))
        if self.state.hosts[0].eps[conn].conn == 0:
            self.world.step("connect", conn=conn)
        elif data.draw(st.booleans()):  # close: registrations of the socket go, cached ones too
            self.world.step("close", conn=conn)

    @rule(data=st.data())
    def startup_or_lookup(self, data):
        host = data.draw(st.integers(0, 1))
        if data.draw(st.booleans()):
            self.world.step("startup_ex", host=host, major=data.draw(st.sampled_from([0, 1, 2, 2, 2, 3])),
                            minor=data.draw(st.sampled_from([0, 1, 2, 2, 3, 255])), data_ok=data.draw(st.booleans()),
                            table_ok=True)
        else:
            self.world.step("get_extension", host=host,
                            fn=data.draw(st.sampled_from([*range(FN_UNKNOWN), FN_UNKNOWN, FN_UNKNOWN])),
                            outlen=data.draw(st.sampled_from([8, 8, 8, 4, 0])))

    # --- registration ----------------------------------------------------------------------

    def _length(self, data):
        regs = [sl.length for h in self.state.hosts for sl in h.slots if sl.used]
        if data.draw(st.integers(0, 7)) == 0:
            return data.draw(st.sampled_from(EDGES + regs))
        return data.draw(st.integers(1, 256))

    def _registration(self, data, name):
        """(host, sock, addr, length, flags): half the time a buffer registered
        before (the cache's and the counts' cases), sometimes nudged; one
        time in eight one argument the function must refuse (REG-02..04) or
        on an integer edge; sometimes across a page boundary or ending at
        the exact end of mapped memory."""
        cfg, ps = self.cfg, self.cfg.page_size
        before = [r[1:] for r in self.world.registered if r[0] == name]
        bad = data.draw(st.sampled_from([None] * 3 + ["flags", "length", "unmapped", "end", "dword", "pointer"]))
        host = data.draw(st.integers(0, 1))
        sock = data.draw(st.integers(0, cfg.sockets - 1))
        if bad:
            addr, length, flags = data.draw(st.integers(0, 256)), data.draw(st.integers(1, 256)), MEM_READWRITE
            if bad == "flags":
                flags = data.draw(st.sampled_from([0, 4, 7, -1, DWORD + 1]))
            elif bad == "length":
                length = data.draw(st.sampled_from([0, -1]))
            elif bad == "dword":
                length = data.draw(st.sampled_from(DWORD_EDGES))
            elif bad == "pointer":
                addr = self.wild_address(data, host)
            else:  # the first unmapped page, or a range ending at (or one past) the end of mapped memory
                holes = [p for p, m in enumerate(self.state.hosts[host].mapped) if not m]
                if holes and holes[0] > 0 and bad == "end":
                    end = holes[0] * ps
                    addr = data.draw(st.integers(max(0, end - 64), end - 1))
                    length = end - addr + data.draw(st.sampled_from([0, 1]))  # the exact end, or one past
                else:
                    addr = holes[0] * ps if holes else cfg.memsize - 8
                    length = 16
            return host, sock, addr, length, flags
        if before and data.draw(st.booleans()):
            host, sock, addr, length, flags = data.draw(st.sampled_from(before))
            nudge = data.draw(st.sampled_from(["same"] * 4 + ["length", "flags"]))
            if nudge == "length":
                length = max(1, length + data.draw(st.sampled_from([-1, 1])))
            elif nudge == "flags":
                flags = data.draw(st.sampled_from([f for f in FLAGS if f != flags]))
            return host, sock, addr, length, flags
        sock = self.socket(data)
        edges = self.boundaries(host)
        if edges and data.draw(st.integers(0, 3)) == 0:  # across a page boundary
            b = data.draw(st.sampled_from(edges))
            addr = data.draw(st.integers(b - 200, b - 1))
            return host, sock, addr, data.draw(st.integers(b - addr + 1, b - addr + 300)), \
                data.draw(st.sampled_from(FLAGS))
        return host, sock, self.address(data, host), self._length(data), data.draw(
            st.sampled_from(FLAGS * 5 + (0, 4)))

    @rule(data=st.data())
    def register_memory(self, data):
        host, sock, addr, length, flags = self._registration(data, "register_memory")
        self.world.step("register_memory", host=host, sock=sock, addr=addr, length=length, flags=flags)

    @rule(data=st.data())
    def register_rdma_memory(self, data):
        host, sock, addr, length, flags = self._registration(data, "register_rdma_memory")
        size = self.cfg.descriptor_size
        self.world.step("register_rdma_memory", host=host, sock=sock, addr=addr, length=length, flags=flags,
                        desc_len=data.draw(st.sampled_from([size] * 5 + [size + 1, 0, size - 1, 4096, DWORD - 1])))

    @rule(data=st.data())
    def fill_the_table(self, data):
        """REG-09: a registration past the table's size (live and cached
        entries together) gets WSAENOBUFS. The random rules seldom hold
        that many at once, so this one registers distinct buffers until
        the table is full, and one more."""
        host = data.draw(st.integers(0, 1))
        socks = [s for s in range(self.cfg.sockets) if self.state.hosts[host].eps[s].conn == CONNECTED]
        ranges = self.mapped_ranges(host)
        if not socks or not ranges:
            return
        sock, (start, size) = data.draw(st.sampled_from(socks)), ranges[0]
        kind = data.draw(st.sampled_from(["register_memory", "register_rdma_memory"]))
        extra = {"desc_len": self.cfg.descriptor_size} if kind == "register_rdma_memory" else {}
        used = sum(sl.used for sl in self.state.hosts[host].slots)
        for i in range(min(self.cfg.slots - used + 1, size)):
            self.world.step(kind, host=host, sock=sock, addr=start + i, length=data.draw(st.integers(1, 16)),
                            flags=MEM_READWRITE, **extra)

    def _deregister(self, data, name, kind, field):
        live = [(h, sl) for h in (0, 1) for sl in self.slots(h, kind) if sl.refs > 0]
        if live and data.draw(st.integers(0, 3)):  # mostly a live one, on its own socket
            host, sl = data.draw(st.sampled_from(live))
            self.world.step(name, host=host, sock=sl.sock, **{field: Ref("issued", sl.rid)})
            return
        host = data.draw(st.integers(0, 1))
        self.world.step(name, host=host, sock=self.socket(data),
                        **{field: self.ref(data, host, descriptor=kind == 2)})

    @rule(data=st.data())
    def deregister_memory(self, data):
        self._deregister(data, "deregister_memory", 1, "handle")

    @rule(data=st.data())
    def deregister_rdma_memory(self, data):
        self._deregister(data, "deregister_rdma_memory", 2, "desc")

    @precondition(lambda self: self.cfg.has_cache)
    @rule(data=st.data())
    def cache_callback(self, data):
        cached = [(h, sl) for h in (0, 1) for sl in self.state.hosts[h].slots if sl.used and sl.refs == 0]
        pick = data.draw(st.integers(0, 5))
        if cached and pick >= 2:  # mostly a range touching a cached entry
            host, sl = data.draw(st.sampled_from(cached))
            addr = data.draw(st.integers(sl.addr - 8, sl.addr + sl.length - 1))
            self.world.step("cache_callback", host=host, addr=addr, size=data.draw(st.integers(1, 300)))
            return
        host = data.draw(st.integers(0, 1))
        if pick == 1:  # sizes and addresses on the edges of SIZE_T's use
            self.world.step("cache_callback", host=host, addr=data.draw(st.sampled_from(
                [0, POINTER - self.base(host) - 1])), size=data.draw(st.sampled_from([DWORD - 1, DWORD, DWORD + 4096])))
            return
        self.world.step("cache_callback", host=host, addr=self.address(data, host),
                        size=data.draw(st.sampled_from([0, 1, 100, self.cfg.page_size, 2 * self.cfg.page_size])))

    # --- transfers ------------------------------------------------------------------------------

    def ready_pairs(self, need_target: bool):
        """(host, sock) where a live local registration exists (and a live
        target on the peer): where a transfer has a chance to succeed."""
        out = []
        for h in (0, 1):
            for s in range(self.cfg.sockets):
                if self.live(h, 1, s) and (self.live(1 - h, 2, s) or not need_target):
                    out.append((h, s))
        return out

    def host_and_socket(self, data, need_target: bool):
        """Mostly a ready pair; one time in eight a closed or failed
        connection, when there is one (CONN-02)."""
        pairs = self.ready_pairs(need_target)
        down = [(h, s) for h in (0, 1) for s in range(self.cfg.sockets)
                if self.state.hosts[h].eps[s].conn != CONNECTED]
        pick = data.draw(st.integers(0, 7))
        if down and pick == 0:
            return data.draw(st.sampled_from(down))
        if pairs and pick >= 2:
            return data.draw(st.sampled_from(pairs))
        return data.draw(st.integers(0, 1)), self.socket(data)

    def fill_for(self, data, write, host, sges, target=None, offset=0):
        """Fresh bytes in a transfer's sources: the local buffers of a write
        or send, the target's range of a read."""
        if write:
            self.fill(data, host, [(a, n) for n, a, _ in sges if isinstance(n, int) and n < 1 << 20])
        elif target is not None:
            total = sum(n for n, _, _ in sges)
            if 0 <= offset and total < 1 << 20:
                self.fill(data, 1 - host, [(target.addr + offset, total)])

    def _rdma(self, data, name, need):
        host, sock = self.host_and_socket(data, need_target=True)
        write = name == "rdma_write"
        remote = MEM_WRITE if write else MEM_READ  # a write's target is written
        sges = self.sges(data, host, sock, need)
        total = sum(n for n, _, _ in sges)
        peer = [sl for sl in self.state.hosts[1 - host].slots if sl.used and sl.kind == 2]
        # which target: mostly a live, permitted one of this connection; else
        # one of another connection, a revoked (cached) one, a dead one, or garbage
        kind = data.draw(st.sampled_from(["live"] * 5 + ["other-connection", "revoked", "dead", "garbage"]))
        pools = {
            "live": [sl for sl in peer if sl.sock == sock and sl.refs > 0 and sl.flags & remote]
                    or [sl for sl in peer if sl.sock == sock],
            "other-connection": [sl for sl in peer if sl.sock != sock and sl.refs > 0],
            "revoked": [sl for sl in peer if sl.sock == sock and sl.refs == 0],
        }
        live_ids = {sl.rid for h in self.state.hosts for sl in h.slots if sl.used}
        dead = [rid for rid, (h, d) in self.world.issued.items() if d and h == 1 - host and rid not in live_ids]
        target = None
        if kind in pools and pools[kind]:
            target = data.draw(st.sampled_from(pools[kind]))
            desc = Ref("issued", target.rid)
            fits = max(0, target.length - total)
            offset = data.draw(often(st.sampled_from([0, fits]) | st.integers(0, fits),
                                     st.sampled_from([fits + 1, 2**31, DWORD - 1, DWORD - max(1, total) + 1])))
        elif kind == "dead" and dead:
            desc, offset = Ref("issued", data.draw(st.sampled_from(dead))), 0
        else:
            desc = self.ref(data, host, descriptor=True)
            offset = data.draw(st.sampled_from([0, 1, 4096, 2**31, 2**32 - 1]))
        self.fill_for(data, write, host, sges, target, offset)
        self.world.step(name, host=host, sock=sock, sges=sges, desc=desc, offset=offset)

    @rule(data=st.data())
    def rdma_write(self, data):
        self._rdma(data, "rdma_write", MEM_READ)

    @precondition(lambda self: self.cfg.has_rdma_read)
    @rule(data=st.data())
    def rdma_read(self, data):
        self._rdma(data, "rdma_read", MEM_WRITE)

    def direction(self, data):
        """(write, need, remote): an RDMA write (the local buffers are read,
        the target written) or, when the provider has WSPRdmaRead, a read."""
        write = not self.cfg.has_rdma_read or data.draw(st.booleans())
        return (write, MEM_READ, MEM_WRITE) if write else (write, MEM_WRITE, MEM_READ)

    def transfer(self, write, host, sock, sges, target_rid, offset, desc=None):
        """The RDMA write or read, through ``desc`` or the issued descriptor ``target_rid``."""
        self.world.step("rdma_write" if write else "rdma_read", host=host, sock=sock, sges=sges,
                        desc=desc or Ref("issued", target_rid), offset=offset)

    def transfer_chances(self, need, remote, refused=False):
        """(host, local registrations granting ``need``, target) on a live
        connection, the target granting ``remote`` (or, with ``refused``,
        not granting it)."""
        out = []
        for h in (0, 1):
            for s in range(self.cfg.sockets):
                if self.state.hosts[h].eps[s].conn != CONNECTED:
                    continue
                local = self.live(h, 1, s, need)
                if not local:
                    continue
                for t in self.live(1 - h, 2, s):
                    if bool(t.flags & remote) != refused:
                        out.append((h, local, t))
        return out

    def ready_transfers(self, data, need, remote, refused=False):
        """``transfer_chances``; when there are none, what is missing is
        registered first on a live connection (a local buffer granting
        ``need``, and a target granting ``remote`` or, with ``refused``,
        only the other access), so a directed rule need not wait for random
        registrations to line up."""
        chances = self.transfer_chances(need, remote, refused)
        if chances:
            return chances
        up = [(h, s) for h in (0, 1) for s in range(self.cfg.sockets)
              if self.state.hosts[h].eps[s].conn == CONNECTED]
        if up:
            h, s = data.draw(st.sampled_from(up))
            if self.ensure(data, h, s, 1, need):
                self.ensure(data, 1 - h, s, 2, 0 if refused else remote, exact=need if refused else None)
        return self.transfer_chances(need, remote, refused)

    def fitting(self, data, regs, t):
        """Buffers of the local registrations ``regs`` and an offset into
        target ``t`` that together fit it: ending at its last byte an eighth
        of the time, crossing one of its page boundaries when it has one."""
        ps = self.cfg.page_size
        sges = self.pieces(data, regs, t.length)
        total = sum(n for n, _, _ in sges)
        lo, hi = 0, t.length - total
        edge = (t.addr // ps + 1) * ps - t.addr  # offset of the target's first page boundary
        if 0 < edge < t.length and total > 1 and data.draw(st.booleans()):
            lo, hi = max(lo, edge - total + 1), min(hi, edge - 1)
        offset = data.draw(often(st.integers(lo, hi) if lo <= hi else st.just(0), st.just(t.length - total)))
        return sges, offset

    @rule(data=st.data())
    def transfer_that_fits(self, data):
        """RDMA-05..07: live local buffers with the access needed (one to
        max_sge of them) and a live target of the peer on the same
        connection; the length and offset fit. The sources hold fresh bytes,
        so the destination's bytes change. Mostly the target grants the
        access; sometimes it does not (ACC-02: refused); sometimes both sides
        were registered once more and deregistered once just before, so one
        reference is left and they still work (DEREG-02, RDEREG-03);
        sometimes the offset is 2**32 minus less than the length, so that
        ``offset + length`` computed in 32 bits wraps to a small number that
        fits (RDMA-05: refused)."""
        write, need, remote = self.direction(data)
        aim = data.draw(st.sampled_from(["granted"] * 4 + ["refused", "shared", "wraps", "one past", "other socket",
                                                            "local refusal"]))
        refused = aim == "refused"
        chances = self.ready_transfers(data, need, remote, refused)
        if not chances:
            return
        host, regs, t = data.draw(st.sampled_from(chances))
        if aim == "shared":  # on both sides, one of two references dropped (DEREG-02, RDEREG-03)
            sl = data.draw(st.sampled_from(regs))
            self.world.step("register_memory", host=host, sock=sl.sock, addr=sl.addr, length=sl.length,
                            flags=sl.flags)
            self.world.step("deregister_memory", host=host, sock=sl.sock, handle=Ref("issued", sl.rid))
            self.world.step("register_rdma_memory", host=1 - host, sock=t.sock, addr=t.addr, length=t.length,
                            flags=t.flags, desc_len=self.cfg.descriptor_size)
            self.world.step("deregister_rdma_memory", host=1 - host, sock=t.sock, desc=Ref("issued", t.rid))
        sges, offset = self.fitting(data, regs, t)
        if aim == "other socket":  # RREG-02: the peer's live target of another connection, granting the access
            others = [x for x in self.live(1 - host, 2, grant=remote) if x.sock != t.sock]
            if others:
                t = data.draw(st.sampled_from(others))
                sges, offset = self.fitting(data, regs, t)
                self.fill_for(data, write, host, sges, t, offset)
                self.transfer(write, host, regs[0].sock, sges, t.rid, offset)
                return
        total = sum(n for n, _, _ in sges)
        if aim == "wraps":  # offset + length past 2**32, or an offset past 2**32 whose low 32 bits fit
            offset = data.draw(st.sampled_from([DWORD - data.draw(st.integers(1, max(1, total - 1))),
                                                DWORD + offset]))
        elif aim == "one past":  # the last byte one past the target's end (RDMA-05)
            offset = t.length - total + 1
        elif aim == "local refusal":  # each local check refuses it before the target is looked at
            for spoiled in self.refusals(data, host, t.sock, sges, regs, need, t.length):
                self.fill_for(data, write, host, spoiled, t, offset)
                self.transfer(write, host, t.sock, spoiled, t.rid, offset)
            return
        self.fill_for(data, write, host, sges, t, offset)
        self.transfer(write, host, t.sock, sges, t.rid, offset)

    @rule(data=st.data())
    def spoiled_descriptor(self, data):
        """RREG-02, RDMA-08: transfers that would fit, through an issued
        descriptor forged at one byte or made shorter or longer: it names no
        registration, so each is refused. Forgeries come eight consecutive
        bytes at a time, or every byte in turn, so a campaign forges each
        byte of the descriptor (a provider checking only some fields misses
        a change in the others); sometimes the peer deregisters through a
        spoiled descriptor instead."""
        write, need, remote = self.direction(data)
        chances = self.transfer_chances(need, remote)
        if not chances:
            return
        host, regs, t = data.draw(st.sampled_from(chances))
        sges, offset = self.fitting(data, regs, t)
        how = data.draw(st.sampled_from(["forged"] * 3 + ["resized", "deregister"]))
        if how == "deregister":
            self.world.step("deregister_rdma_memory", host=1 - host, sock=t.sock, desc=self.spoiled(data, t.rid))
            return
        size = self.cfg.descriptor_size
        if how == "forged":  # every byte in turn, a quarter of the time; else a drawn block of eight
            start, n = (0, size) if data.draw(st.integers(0, 3)) == 0 else (data.draw(st.integers(0, size - 1)), 8)
            refs = [Ref("forged", t.rid, at % size, data.draw(st.sampled_from([0x01, 0x80, 0xFF, 0x10])))
                    for at in range(start, start + min(n, size))]
        else:  # one byte short, one byte long, empty, much longer
            refs = [Ref("resized", t.rid, delta) for delta in (-1, 1, -10**6, 4096)]
        for ref in refs:
            if self.state.hosts[host].eps[t.sock].conn != CONNECTED:  # a refusal by the peer fails it (RDMA-08)
                return
            self.transfer(write, host, t.sock, sges, t.rid, offset, desc=ref)

    @rule(data=st.data())
    def revoke_then_use(self, data):
        """RDEREG-02, CACHE-03: the peer deregisters an RDMA buffer, then
        this host aims at it a transfer that would otherwise succeed. What
        is missing (a local buffer with the access, a target granting it) is
        registered first: only a transfer that fits shows a window left
        bound, so the rule must not depend on random registrations (on a
        provider with few slots they rarely line up)."""
        write, need, remote = self.direction(data)
        chances = self.ready_transfers(data, need, remote)
        if not chances:
            return
        host, regs, target = data.draw(st.sampled_from(chances))
        for _ in range(target.refs):  # drop every reference, so it is revoked
            self.world.step("deregister_rdma_memory", host=1 - host, sock=target.sock,
                            desc=Ref("issued", target.rid))
        sges, offset = self.fitting(data, regs, target)
        self.fill_for(data, write, host, sges, target, offset)
        self.transfer(write, host, target.sock, sges, target.rid, offset)

    @precondition(lambda self: self.cfg.has_cache)
    @rule(data=st.data())
    def cache_hit_then_use(self, data):
        """CACHE-02, CACHE-03: a buffer goes to the cache (its last
        reference dropped) and is registered again with the same key: a
        local one comes back with its handle, an RDMA one with a new
        descriptor; then a transfer uses it and moves bytes."""
        write, need, remote = self.direction(data)
        chances = self.transfer_chances(need, remote)
        if not chances:
            return
        host, regs, t = data.draw(st.sampled_from(chances))
        if data.draw(st.booleans()):  # the local buffer through the cache
            sl = data.draw(st.sampled_from(regs))
            for _ in range(sl.refs):
                self.world.step("deregister_memory", host=host, sock=sl.sock, handle=Ref("issued", sl.rid))
            if data.draw(st.integers(0, 3)) == 0:  # the same address, another length or flags: no hit (CACHE-02)
                other = data.draw(st.sampled_from([f for f in FLAGS if f != sl.flags and f & need] or [sl.flags]))
                self.world.step("register_memory", host=host, sock=sl.sock, addr=sl.addr,
                                length=sl.length + data.draw(st.sampled_from([1, -1] if sl.length > 1 else [1])),
                                flags=other)
            self.world.step("register_memory", host=host, sock=sl.sock, addr=sl.addr, length=sl.length,
                            flags=sl.flags)
        else:  # the target through the cache: re-exposed under a new descriptor
            for _ in range(t.refs):
                self.world.step("deregister_rdma_memory", host=1 - host, sock=t.sock, desc=Ref("issued", t.rid))
            self.world.step("register_rdma_memory", host=1 - host, sock=t.sock, addr=t.addr, length=t.length,
                            flags=t.flags, desc_len=self.cfg.descriptor_size)
        again = self.transfer_chances(need, remote)
        if not again:
            return
        host, regs, t = data.draw(st.sampled_from(again))
        sges, offset = self.fitting(data, regs, t)
        self.fill_for(data, write, host, sges, t, offset)
        self.transfer(write, host, t.sock, sges, t.rid, offset)

    @rule(data=st.data())
    def reuse_after_free(self, data):
        """MEM-01, MEM-04, CACHE-04: the application frees a page no live
        registration touches (the callback releases what is cached there),
        maps it again at the same address, registers a buffer on it and
        moves bytes through it. A provider whose stale registration still
        pins the old page moves the old page's bytes."""
        cfg, ps = self.cfg, self.cfg.page_size
        host = data.draw(st.integers(0, 1))  # the host whose page is reborn
        sock = data.draw(st.integers(0, cfg.sockets - 1))
        if self.state.hosts[0].eps[sock].conn != CONNECTED:
            return
        pages = [p for p, m in enumerate(self.state.hosts[host].mapped) if m and not self.live_on(host, p, 1)]
        if not pages:
            return
        page = data.draw(st.sampled_from(pages))
        self.world.step("free", host=host, page=page, npages=1)
        self.world.step("alloc", host=host, page=page, npages=1)
        addr, length = page * ps + data.draw(st.integers(0, ps - 64)), data.draw(st.integers(1, 64))
        write, need, remote = self.direction(data)
        local_side = data.draw(st.booleans())  # the reborn page holds the local buffer, or the target
        if local_side:
            self.world.step("register_memory", host=host, sock=sock, addr=addr, length=length, flags=need)
        else:
            self.world.step("register_rdma_memory", host=host, sock=sock, addr=addr, length=length, flags=remote,
                            desc_len=cfg.descriptor_size)
        chances = [(h, regs, t) for h, regs, t in self.transfer_chances(need, remote)
                   if t.sock == sock and (h == host if local_side else h == 1 - host)]
        if not chances:
            return
        h, regs, t = data.draw(st.sampled_from(chances))
        if local_side:
            regs = [sl for sl in regs if sl.addr == addr and sl.length == length] or regs
        else:
            t = next((x for x in self.live(host, 2, sock) if x.addr == addr and x.length == length), t)
        sges, offset = self.fitting(data, regs, t)
        self.fill_for(data, write, h, sges, t, offset)
        self.transfer(write, h, sock, sges, t.rid, offset)

    @rule(data=st.data())
    def exchange(self, data):
        """XFER-01..03: the receiver posts into a live buffer that grants
        MEM_WRITE, the sender sends from live MEM_READ ones (1 to max_sge
        buffers of fresh bytes), the receiver reaps it: the separate rules
        rarely line up all four conditions, so a successful send and its
        recv_done are made here on purpose. Sometimes the message is one
        byte too long, ends one byte past its buffer or names no handle, or
        the receive itself runs one byte past its buffer (RDMA-04); sometimes
        the receiver tries to deregister the buffer while the receive is
        posted (DEREG-03)."""
        cfg = self.cfg
        pairs = [(h, s) for h in (0, 1) for s in range(cfg.sockets)
                 if self.state.hosts[h].eps[s].conn == CONNECTED and self.state.hosts[1 - h].eps[s].recv == RECV_IDLE]
        if not pairs:
            return
        host, sock = data.draw(st.sampled_from(pairs))
        receivers = self.ensure(data, 1 - host, sock, 1, MEM_WRITE)
        if not receivers or not self.ensure(data, host, sock, 1, MEM_READ):
            return
        rl = data.draw(st.sampled_from(receivers))
        room = data.draw(st.integers(1, rl.length))
        at = data.draw(st.integers(rl.addr, rl.addr + rl.length - room))
        odd = data.draw(st.integers(0, 11))
        if odd == 0:  # the receive's last byte outside its registration
            at = rl.addr + rl.length - room + 1
        elif odd == 1:  # an empty receive buffer (RDMA-04)
            room = 0
        self.world.step("post_recv", host=1 - host, sock=sock, length=room, addr=at, handle=Ref("issued", rl.rid))
        if self.state.hosts[1 - host].eps[sock].recv != RECV_POSTED:
            return
        if data.draw(st.integers(0, 5)) == 0:  # a posted receive holds its buffer (DEREG-03)
            self.world.step("deregister_memory", host=1 - host, sock=sock, handle=Ref("issued", rl.rid))
        regs = self.live(host, 1, sock, MEM_READ)
        aim = data.draw(st.sampled_from(["fits"] * 4 + ["too long", "local refusal"]))
        sges = self.pieces(data, regs, room)
        if aim == "too long":
            # one byte more than the receive holds: the connection fails and
            # the receive is aborted (XFER-03, CONN-01)
            big = [sl for sl in regs if sl.length > room]
            if big:
                sl = data.draw(st.sampled_from(big))
                sges = ((room + 1, sl.addr, Ref("issued", sl.rid)),)
        elif aim == "local refusal":  # each refused at the call; the receive stays posted
            for spoiled in self.refusals(data, host, sock, sges, regs, MEM_READ, room):
                self.fill_for(data, True, host, spoiled)
                self.world.step("send", host=host, sock=sock, sges=spoiled)
            return
        self.fill_for(data, True, host, sges)
        self.world.step("send", host=host, sock=sock, sges=sges)
        if self.state.hosts[1 - host].eps[sock].recv == RECV_DONE:
            self.world.step("recv_done", host=1 - host, sock=sock)

    @precondition(lambda self: self.cfg.has_cache)
    @rule(data=st.data())
    def release_then_free(self, data):
        """MEM-04, CACHE-04: the application drops its last reference to a
        buffer, then unmaps the pages under it; the switch's callback must
        release the cached entry first. Random frees rarely find a page
        with a cached entry and no live one."""
        ps = self.cfg.page_size
        chances = []
        for h in (0, 1):
            for sl in self.state.hosts[h].slots:
                if sl.used and sl.refs > 0 and sl.length > 0:
                    page = sl.addr // ps
                    npages = (sl.addr + sl.length - 1) // ps - page + 1
                    if not self.live_on(h, page, npages, but=sl):
                        chances.append((h, sl, page, npages))
        if not chances:
            return
        host, sl, page, npages = data.draw(st.sampled_from(chances))
        name, field = ("deregister_memory", "handle") if sl.kind == 1 else ("deregister_rdma_memory", "desc")
        for _ in range(sl.refs):
            self.world.step(name, host=host, sock=sl.sock, **{field: Ref("issued", sl.rid)})
        if not self.live_on(host, page, npages):  # a posted receive keeps it live (DEREG-03)
            self.world.step("free", host=host, page=page, npages=npages)

    @precondition(lambda self: self.cfg.has_cache)
    @rule(data=st.data())
    def close_then_register_again(self, data):
        """CACHE-06, REG-07: a socket closes while it holds a cached local
        registration; once reconnected, the same buffer is registered again:
        a new registration with a new handle, never the old entry."""
        chances = [(h, sl) for h in (0, 1) for sl in self.slots(h, 1) if sl.refs > 0
                   and self.state.hosts[h].eps[sl.sock].recv != RECV_POSTED]
        if not chances:
            return
        host, sl = data.draw(st.sampled_from(chances))
        for _ in range(sl.refs):
            self.world.step("deregister_memory", host=host, sock=sl.sock, handle=Ref("issued", sl.rid))
        self.world.step("close", conn=sl.sock)
        self.world.step("connect", conn=sl.sock)
        self.world.step("register_memory", host=host, sock=sl.sock, addr=sl.addr, length=sl.length, flags=sl.flags)

    @rule(data=st.data())
    def same_range_other_flags(self, data):
        """REG-05, REG-07, RREG-05: a registration is keyed by socket,
        range and flags, so the same range with other flags is a new
        registration (a new handle or descriptor, or WSAENOBUFS when the
        table is full), whether the first is live or cached. A cache keyed
        by range alone hands back the first one."""
        chances = [(h, sl) for h in (0, 1) for sl in self.state.hosts[h].slots
                   if sl.used and sl.length > 0 and self.state.hosts[h].eps[sl.sock].conn == CONNECTED]
        if not chances:
            return
        host, sl = data.draw(st.sampled_from(chances))
        flags = data.draw(st.sampled_from([f for f in FLAGS if f != sl.flags]))
        if sl.kind == 1:
            self.world.step("register_memory", host=host, sock=sl.sock, addr=sl.addr, length=sl.length, flags=flags)
        else:
            self.world.step("register_rdma_memory", host=host, sock=sl.sock, addr=sl.addr, length=sl.length,
                            flags=flags, desc_len=self.cfg.descriptor_size)

    @rule(data=st.data())
    def use_closed_socket(self, data):
        """CONN-02: every data call on a closed socket gets WSAENOTCONN,
        whatever its buffers; the socket is then connected again. Random
        closes are rare and a send or receive rarely follows one."""
        conn = data.draw(st.integers(0, self.cfg.sockets - 1))
        host = data.draw(st.integers(0, 1))
        if self.state.hosts[0].eps[conn].conn != 0:
            self.world.step("close", conn=conn)
        garbage = ((1, 0, Ref("garbage")),)
        self.world.step("post_recv", host=host, sock=conn, length=1, addr=0, handle=Ref("garbage"))
        self.world.step("send", host=host, sock=conn, sges=garbage)
        self.transfer(self.direction(data)[0], host, conn, garbage, None, 0, desc=Ref("garbage"))
        self.world.step("connect", conn=conn)

    @rule(data=st.data())
    def startup_to_limit(self, data):
        """START-05: startups past the provider's limit get WSAEPROCLIM
        (there is no cleanup in the model, so a host stays at its limit)."""
        host = data.draw(st.integers(0, 1))
        for _ in range(max(1, self.cfg.max_startups - self.state.hosts[host].startups + 1)):
            self.world.step("startup_ex", host=host, major=2, minor=2)

    @rule(data=st.data())
    def post_recv(self, data):
        host, sock = self.host_and_socket(data, need_target=False)
        if not (0 <= sock < self.cfg.sockets):
            return
        if not (self.state.hosts[host].eps[sock].recv == RECV_IDLE):
            return
        (length, addr, handle), = self.sges(data, host, sock, MEM_WRITE)[:1] or ((1, 0, Ref("garbage")),)
        self.world.step("post_recv", host=host, sock=sock, length=length, addr=addr, handle=handle)

    @rule(data=st.data())
    def send(self, data):
        host, sock = self.host_and_socket(data, need_target=False)
        if not (0 <= sock < self.cfg.sockets):
            return
        waiting = [(1 - h, s) for h in (0, 1) for s in range(self.cfg.sockets)
                   if self.state.hosts[h].eps[s].recv == RECV_POSTED]
        if waiting and data.draw(st.integers(0, 3)):  # mostly toward a posted receive
            host, sock = data.draw(st.sampled_from(waiting))
        ep, peer = self.state.hosts[host].eps[sock], self.state.hosts[1 - host].eps[sock]
        sges = self.sges(data, host, sock, MEM_READ)
        # a send to a peer with no posted receive would wait: the switch never
        # does it (XFER-03); one refused at call time does not get that far
        refused_here = ep.conn != CONNECTED or not 1 <= len(sges) <= self.cfg.max_sge
        if not (refused_here or peer.recv == RECV_POSTED):
            return
        room = peer.recv_len
        if room and sum(n for n, _, _ in sges) > room and data.draw(st.integers(0, 3)):
            (n, a, ref), = sges[:1]  # mostly a message that fits the posted receive
            sges = ((max(1, min(n, room)), a, ref),)
        self.fill_for(data, True, host, sges)
        self.world.step("send", host=host, sock=sock, sges=sges)

    @rule(data=st.data())
    def recv_done(self, data):
        done = [(h, s) for h in (0, 1) for s in range(self.cfg.sockets)
                if self.state.hosts[h].eps[s].recv == RECV_DONE]
        if not done:
            return
        host, sock = data.draw(st.sampled_from(done))
        self.world.step("recv_done", host=host, sock=sock)


def make_machine(factory: ProviderFactory, cfg: Config,
                 on_world: Callable[[World], None] | None = None) -> type[Lockstep]:
    """``Lockstep`` bound to providers made by ``factory`` and the model's
    ``cfg``. ``on_world`` sees each World as it is made (the campaign keeps
    the last one to report coverage and the trace of a divergence)."""
    return type("Lockstep", (Lockstep,), {"factory": staticmethod(factory), "cfg": cfg,
                                           "on_world": staticmethod(on_world) if on_world else None})
