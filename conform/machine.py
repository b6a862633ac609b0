"""The Hypothesis state machine that drives a World: every SPI call and
environment event is a rule; after each step the World has compared results
and bytes. Generation leans on aliasing: handles and descriptors already
issued (live, cached, dead, the other host's), forged ones, addresses on page
and registration boundaries, lengths of 0, 1, exact and one too many.

A rule that finds nothing to do returns without a step: ``assume`` there
would throw the whole example away, not just the step.
"""

from __future__ import annotations

from typing import Callable

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from sanspi.conform.world import Ref, World
from sanspi.impl.interface import Provider
from sanspi.model.constants import (
    CONNECTED, FN_UNKNOWN, MEM_READ, MEM_READWRITE, MEM_WRITE, RECV_DONE, RECV_IDLE, RECV_POSTED,
)
from sanspi.model.state import Config

EDGES = [-1, 0, 1, 7, 8, 4095, 4096, 4097, 2**32 - 1, 2**40]


def often(usual, rare):
    """``usual`` seven times in eight, else ``rare`` (``a | b`` would be half and half)."""
    return st.integers(0, 7).flatmap(lambda r: rare if r == 0 else usual)


def make_machine(factory: Callable[[], tuple[Provider, Provider]], cfg: Config,
                 on_world: Callable[[World], None] | None = None) -> type[RuleBasedStateMachine]:
    """A state machine class for providers made by ``factory``.

    ``on_world`` sees each World as it is made (the campaign keeps the last
    one to report coverage and the shrunk trace of a divergence).
    """

    class Lockstep(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.world = World(factory(), cfg)
            if on_world:
                on_world(self.world)

        def teardown(self):
            for p in self.world.providers:
                p.shutdown()

        # --- helpers over the model's state (what the switch knows) -----------

        @property
        def state(self):
            return self.world.model.state

        def mapped_ranges(self, host):
            ps, host_state = cfg.page_size, self.state.hosts[host]
            return [(p * ps, ps) for p, m in enumerate(host_state.mapped) if m]

        def slots(self, host, kind, sock=None):
            return [sl for sl in self.state.hosts[host].slots
                    if sl.used and sl.kind == kind and (sock is None or sl.sock == sock)]

        def live_on(self, host, page, npages, but=None):
            """Does a live registration of ``host`` (other than ``but``) touch
            these pages? The switch frees no such page (MEM-04)."""
            lo, hi = page * cfg.page_size, (page + npages) * cfg.page_size
            return any(sl.used and sl.refs > 0 and sl is not but and sl.addr < hi and lo < sl.addr + sl.length
                       for sl in self.state.hosts[host].slots)

        def address(self, data, host):
            ranges = self.mapped_ranges(host)
            regs = [sl for sl in self.state.hosts[host].slots if sl.used]
            options = [st.sampled_from(EDGES)]
            if ranges:
                options.append(st.sampled_from(ranges).flatmap(lambda r: st.integers(r[0], r[0] + r[1] - 1)))
                options.append(st.sampled_from([a for a, _ in ranges]))
            if regs:
                options.append(st.sampled_from([sl.addr for sl in regs] + [sl.addr + sl.length for sl in regs]))
            return data.draw(st.one_of(*options[1:] or options) if data.draw(st.integers(0, 9)) else options[0])

        def ref(self, data, host, descriptor):
            """A handle (or descriptor): mostly issued ones, some garbage or forged."""
            mine = [rid for rid, (h, d) in self.world.issued.items() if d == descriptor]
            how = data.draw(st.sampled_from(["issued"] * 6 + ["garbage", "forged"] if mine else ["garbage"]))
            if how == "garbage":
                return Ref("garbage", data.draw(st.integers(0, 3)))
            rid = data.draw(st.sampled_from(sorted(mine)))
            if how == "forged":
                return Ref("forged" if descriptor else "issued", rid, data.draw(st.integers(0, 31)))
            return Ref("issued", rid)

        def sges(self, data, host, sock, need):
            """WSABUFEX triples, mostly inside this socket's local registrations."""
            regs = self.slots(host, 1, sock)
            if data.draw(st.integers(0, 7)):  # mostly live ones that grant the access needed
                regs = [sl for sl in regs if sl.refs > 0 and sl.flags & need] or regs
            count = data.draw(st.integers(1, cfg.max_sge) if data.draw(st.integers(0, 9)) else
                              st.sampled_from([0, cfg.max_sge + 1]))
            out = []
            for _ in range(count):
                if regs and data.draw(st.integers(0, 4)):
                    sl = data.draw(st.sampled_from(regs))
                    a = data.draw(st.integers(sl.addr, sl.addr + sl.length - 1))
                    n = data.draw(often(st.integers(1, sl.addr + sl.length - a), st.just(sl.addr + sl.length - a + 1)))
                    out.append((n, a, Ref("issued", sl.rid)))
                else:
                    out.append((data.draw(st.sampled_from([0, 1, 64])), self.address(data, host),
                                self.ref(data, host, descriptor=False)))
            return tuple(out)

        def socket(self, data):
            return data.draw(st.integers(0, cfg.sockets - 1) if data.draw(st.integers(0, 15)) else
                             st.sampled_from([-1, cfg.sockets]))

        # --- set-up --------------------------------------------------------------

        @initialize(data=st.data())
        def start(self, data):
            for h in (0, 1):
                self.world.step("startup_ex", host=h, major=2, minor=2)
                self.world.step("alloc", host=h, page=0, npages=data.draw(st.integers(1, cfg.pages - 1)))
            for conn in range(cfg.sockets):
                self.world.step("connect", conn=conn)
            # registrations to start from, so transfers have something to use:
            # on each host and socket a local buffer and an RDMA buffer
            for h in (0, 1):
                for sock in range(cfg.sockets):
                    for kind in ("register_memory", "register_rdma_memory"):
                        if data.draw(st.integers(0, 7)) == 0:
                            continue
                        extra = {"desc_len": cfg.descriptor_size} if kind == "register_rdma_memory" else {}
                        addr = data.draw(st.integers(0, cfg.page_size - 256))
                        self.world.step(kind, host=h, sock=sock, addr=addr, length=data.draw(st.integers(1, 256)),
                                        flags=data.draw(often(st.just(MEM_READWRITE), st.sampled_from([1, 2]))),
                                        **extra)

        # --- environment ----------------------------------------------------------

        @rule(data=st.data())
        def alloc(self, data):
            host = data.draw(st.integers(0, 1))
            free = [p for p, m in enumerate(self.state.hosts[host].mapped) if not m]
            if not free:
                return
            page = data.draw(st.sampled_from(free))
            two = page + 1 < cfg.pages and not self.state.hosts[host].mapped[page + 1] and data.draw(st.booleans())
            self.world.step("alloc", host=host, page=page, npages=2 if two else 1)

        @rule(data=st.data())
        def free(self, data):
            host = data.draw(st.integers(0, 1))
            mapped = [p for p, m in enumerate(self.state.hosts[host].mapped) if m]
            if not mapped:
                return
            ps = cfg.page_size
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
            conn = data.draw(st.integers(0, cfg.sockets - 1))
            if self.state.hosts[0].eps[conn].conn == 0:
                self.world.step("connect", conn=conn)
            elif data.draw(st.booleans()):  # close: registrations of the socket go, cached ones too
                self.world.step("close", conn=conn)

        @rule(data=st.data())
        def startup_or_lookup(self, data):
            host = data.draw(st.integers(0, 1))
            if data.draw(st.booleans()):
                self.world.step("startup_ex", host=host, major=data.draw(st.integers(0, 3)),
                                minor=data.draw(st.integers(0, 3)), data_ok=data.draw(st.booleans()),
                                table_ok=True)
            else:
                self.world.step("get_extension", host=host,
                                fn=data.draw(st.sampled_from([*range(FN_UNKNOWN), FN_UNKNOWN, FN_UNKNOWN])),
                                outlen=data.draw(st.sampled_from([8, 8, 8, 4, 0])))

        # --- registration -------------------------------------------------------------

        def _flags(self, data):
            return data.draw(st.sampled_from([MEM_READ, MEM_WRITE, MEM_READWRITE] * 5 + [0, 4]))

        def _length(self, data):
            regs = [sl.length for h in self.state.hosts for sl in h.slots if sl.used]
            if data.draw(st.integers(0, 7)) == 0:
                return data.draw(st.sampled_from(EDGES + regs))
            return data.draw(st.integers(1, 256))

        def _registration(self, data, name):
            """(host, sock, addr, length, flags): half the time a buffer registered
            before (the cache's and the counts' cases), sometimes nudged; one
            time in eight one argument the function must refuse (REG-02..04)."""
            before = [r[1:] for r in self.world.registered if r[0] == name]
            bad = data.draw(often(st.just(None), st.sampled_from(["flags", "length", "unmapped"])))
            if bad:
                host = data.draw(st.integers(0, 1))
                sock = data.draw(st.integers(0, cfg.sockets - 1))
                addr, length, flags = data.draw(st.integers(0, 256)), data.draw(st.integers(1, 256)), MEM_READWRITE
                if bad == "flags":
                    flags = data.draw(st.sampled_from([0, 4, 7, -1]))
                elif bad == "length":
                    length = data.draw(st.sampled_from([0, -1]))
                else:  # the first unmapped page, or a range running past the address space
                    holes = [p for p, m in enumerate(self.state.hosts[host].mapped) if not m]
                    addr = holes[0] * cfg.page_size if holes else cfg.pages * cfg.page_size - 8
                    length = 16
                return host, sock, addr, length, flags
            if before and data.draw(st.booleans()):
                host, sock, addr, length, flags = data.draw(st.sampled_from(before))
                nudge = data.draw(st.sampled_from(["same"] * 4 + ["length", "flags"]))
                if nudge == "length":
                    length = max(1, length + data.draw(st.sampled_from([-1, 1])))
                elif nudge == "flags":
                    flags = data.draw(st.sampled_from([f for f in (MEM_READ, MEM_WRITE, MEM_READWRITE) if f != flags]))
                return host, sock, addr, length, flags
            host, sock = data.draw(st.integers(0, 1)), self.socket(data)
            addr = self.address(data, host)
            return host, sock, addr, self._length(data), self._flags(data)

        @rule(data=st.data())
        def register_memory(self, data):
            host, sock, addr, length, flags = self._registration(data, "register_memory")
            self.world.step("register_memory", host=host, sock=sock, addr=addr, length=length, flags=flags)

        @rule(data=st.data())
        def fill_the_table(self, data):
            """REG-09: a registration past the table's size (live and cached
            entries together) gets WSAENOBUFS. The random rules seldom hold
            that many at once, so this one registers distinct buffers until
            the table is full, and one more."""
            host = data.draw(st.integers(0, 1))
            socks = [s for s in range(cfg.sockets) if self.state.hosts[host].eps[s].conn == CONNECTED]
            ranges = self.mapped_ranges(host)
            if not socks or not ranges:
                return
            sock, (start, size) = data.draw(st.sampled_from(socks)), ranges[0]
            kind = data.draw(st.sampled_from(["register_memory", "register_rdma_memory"]))
            extra = {"desc_len": cfg.descriptor_size} if kind == "register_rdma_memory" else {}
            used = sum(sl.used for sl in self.state.hosts[host].slots)
            for i in range(min(cfg.slots - used + 1, size)):
                self.world.step(kind, host=host, sock=sock, addr=start + i, length=data.draw(st.integers(1, 16)),
                                flags=MEM_READWRITE, **extra)

        @rule(data=st.data())
        def register_rdma_memory(self, data):
            host, sock, addr, length, flags = self._registration(data, "register_rdma_memory")
            self.world.step("register_rdma_memory", host=host, sock=sock, addr=addr, length=length, flags=flags,
                            desc_len=data.draw(often(st.just(cfg.descriptor_size),
                                                     st.sampled_from([0, cfg.descriptor_size - 1, 4096]))))

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

        @precondition(lambda self: cfg.has_cache)
        @rule(data=st.data())
        def cache_callback(self, data):
            cached = [(h, sl) for h in (0, 1) for sl in self.state.hosts[h].slots if sl.used and sl.refs == 0]
            if cached and data.draw(st.integers(0, 2)):  # mostly a range touching a cached entry
                host, sl = data.draw(st.sampled_from(cached))
                addr = data.draw(st.integers(sl.addr - 8, sl.addr + sl.length - 1))
                self.world.step("cache_callback", host=host, addr=addr, size=data.draw(st.integers(1, 300)))
                return
            host = data.draw(st.integers(0, 1))
            self.world.step("cache_callback", host=host, addr=self.address(data, host),
                            size=data.draw(st.sampled_from([0, 1, 100, cfg.page_size, 2 * cfg.page_size])))

        # --- transfers -------------------------------------------------------------------

        def ready_pairs(self, need_target: bool):
            """(host, sock) where a live local registration exists (and a live
            target on the peer): where a transfer has a chance to succeed."""
            out = []
            for h in (0, 1):
                for s in range(cfg.sockets):
                    local = [sl for sl in self.slots(h, 1, s) if sl.refs > 0]
                    target = [sl for sl in self.slots(1 - h, 2, s) if sl.refs > 0]
                    if local and (target or not need_target):
                        out.append((h, s))
            return out

        def host_and_socket(self, data, need_target: bool):
            """Mostly a ready pair; one time in eight a closed or failed
            connection, when there is one (CONN-02)."""
            pairs = self.ready_pairs(need_target)
            down = [(h, s) for h in (0, 1) for s in range(cfg.sockets)
                    if self.state.hosts[h].eps[s].conn != CONNECTED]
            pick = data.draw(st.integers(0, 7))
            if down and pick == 0:
                return data.draw(st.sampled_from(down))
            if pairs and pick >= 2:
                return data.draw(st.sampled_from(pairs))
            return data.draw(st.integers(0, 1)), self.socket(data)

        def _rdma(self, data, name, need):
            host, sock = self.host_and_socket(data, need_target=True)
            remote = MEM_WRITE if need == MEM_READ else MEM_READ  # a write's target is written
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
            if kind in pools and pools[kind]:
                t = data.draw(st.sampled_from(pools[kind]))
                desc = Ref("issued", t.rid)
                fits = max(0, t.length - total)
                offset = data.draw(often(st.sampled_from([0, fits]) | st.integers(0, fits), st.just(fits + 1)))
            elif kind == "dead" and dead:
                desc, offset = Ref("issued", data.draw(st.sampled_from(dead))), 0
            else:
                desc = self.ref(data, host, descriptor=True)
                offset = data.draw(st.sampled_from([0, 1, 4096, 2**32 - 1]))
            self.world.step(name, host=host, sock=sock, sges=sges, desc=desc, offset=offset)

        @rule(data=st.data())
        def revoke_then_use(self, data):
            """RDEREG-02, CACHE-03: the peer deregisters an RDMA buffer, then
            this host aims a transfer at it that would otherwise fit."""
            chances = [(h, sl) for h in (0, 1) for sl in self.slots(1 - h, 2) if sl.refs > 0
                       and any(l.refs > 0 for l in self.slots(h, 1, sl.sock))]
            if not chances:
                return
            host, target = data.draw(st.sampled_from(chances))
            for _ in range(target.refs):  # drop every reference, so it is revoked
                self.world.step("deregister_rdma_memory", host=1 - host, sock=target.sock,
                                desc=Ref("issued", target.rid))
            write = not self.world.cfg.has_rdma_read or data.draw(st.booleans())
            need = MEM_READ if write else MEM_WRITE
            usable = [sl for sl in self.slots(host, 1, target.sock) if sl.refs > 0 and sl.flags & need]
            if usable:  # a transfer that would succeed but for the revocation
                sges, offset = self.fitting(data, data.draw(st.sampled_from(usable)), target)
            else:
                sges, offset = self.sges(data, host, target.sock, need), 0
            self.world.step("rdma_write" if write else "rdma_read", host=host, sock=target.sock, sges=sges,
                            desc=Ref("issued", target.rid), offset=offset)

        @rule(data=st.data())
        def exchange(self, data):
            """XFER-01..03: the receiver posts into a live buffer that grants
            MEM_WRITE, the sender sends from a live MEM_READ one, the receiver
            reaps it: the separate rules rarely line up all four conditions,
            so a successful send and its recv_done are made here on purpose.
            Sometimes the message is one byte too long, ends one byte past its
            buffer or names no handle, or the receive itself runs one byte
            past its buffer (RDMA-04)."""
            chances = [(h, s, rl, sl) for h in (0, 1) for s in range(cfg.sockets)
                       if self.state.hosts[h].eps[s].conn == CONNECTED
                       and self.state.hosts[1 - h].eps[s].recv == RECV_IDLE
                       for rl in self.slots(1 - h, 1, s) if rl.refs > 0 and rl.flags & MEM_WRITE
                       for sl in self.slots(h, 1, s) if sl.refs > 0 and sl.flags & MEM_READ]
            if not chances:
                return
            host, sock, rl, sl = data.draw(st.sampled_from(chances))
            room = data.draw(st.integers(1, rl.length))
            at = data.draw(st.integers(rl.addr, rl.addr + rl.length - room))
            if data.draw(st.integers(0, 7)) == 0:  # the receive's last byte outside its registration
                at = rl.addr + rl.length - room + 1
            self.world.step("post_recv", host=1 - host, sock=sock, length=room, addr=at, handle=Ref("issued", rl.rid))
            if self.state.hosts[1 - host].eps[sock].recv != RECV_POSTED:
                return
            n = data.draw(st.integers(1, min(room, sl.length)))
            a = data.draw(st.integers(sl.addr, sl.addr + sl.length - n))
            aim = data.draw(st.sampled_from(["fits"] * 4 + ["too long", "past the buffer", "no handle"]))
            if aim == "too long" and sl.length > room:
                # one byte more than the receive holds: the connection fails
                # and the receive is aborted (XFER-03, CONN-01)
                n = room + 1
                a = data.draw(st.integers(sl.addr, sl.addr + sl.length - n))
            elif aim == "past the buffer":  # the last byte lies outside the registration (RDMA-04)
                a = sl.addr + sl.length - n + 1
            handle = Ref("garbage", data.draw(st.integers(0, 3))) if aim == "no handle" else Ref("issued", sl.rid)
            self.world.step("send", host=host, sock=sock, sges=((n, a, handle),))
            if self.state.hosts[1 - host].eps[sock].recv == RECV_DONE:
                self.world.step("recv_done", host=1 - host, sock=sock)

        @precondition(lambda self: cfg.has_cache)
        @rule(data=st.data())
        def release_then_free(self, data):
            """MEM-04, CACHE-04: the application drops its last reference to a
            buffer, then unmaps the pages under it; the switch's callback must
            release the cached entry first. Random frees rarely find a page
            with a cached entry and no live one."""
            ps = cfg.page_size
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

        @rule(data=st.data())
        def startup_to_limit(self, data):
            """START-05: startups past the provider's limit get WSAEPROCLIM
            (there is no cleanup in the model, so a host stays at its limit)."""
            host = data.draw(st.integers(0, 1))
            for _ in range(max(1, cfg.max_startups - self.state.hosts[host].startups + 1)):
                self.world.step("startup_ex", host=host, major=2, minor=2)

        @rule(data=st.data())
        def transfer_that_fits(self, data):
            """RDMA-05..07: one live local buffer with the access needed and a
            live target of the peer on the same connection; the length and
            offset fit, ending at the target's last byte an eighth of the
            time. Mostly the target grants the access; sometimes it does not
            (ACC-02: refused), and sometimes both buffers were registered once
            more and deregistered once just before, so one reference is left
            and they still work (DEREG-02, RDEREG-03). The generic rules
            reach these only when many independent draws agree."""
            write = not cfg.has_rdma_read or data.draw(st.booleans())
            need, remote = (MEM_READ, MEM_WRITE) if write else (MEM_WRITE, MEM_READ)
            aim = data.draw(st.sampled_from(["granted"] * 3 + ["refused", "shared"]))
            chances = [(h, sl, t) for h in (0, 1) for s in range(cfg.sockets)
                       if self.state.hosts[h].eps[s].conn == CONNECTED
                       for sl in self.slots(h, 1, s) if sl.refs > 0 and sl.flags & need
                       for t in self.slots(1 - h, 2, s) if t.refs > 0 and bool(t.flags & remote) != (aim == "refused")]
            if not chances:
                return
            host, sl, t = data.draw(st.sampled_from(chances))
            if aim == "shared":  # on both sides, one of two references dropped (DEREG-02, RDEREG-03)
                self.world.step("register_memory", host=host, sock=sl.sock, addr=sl.addr, length=sl.length,
                                flags=sl.flags)
                self.world.step("deregister_memory", host=host, sock=sl.sock, handle=Ref("issued", sl.rid))
                self.world.step("register_rdma_memory", host=1 - host, sock=t.sock, addr=t.addr, length=t.length,
                                flags=t.flags, desc_len=cfg.descriptor_size)
                self.world.step("deregister_rdma_memory", host=1 - host, sock=t.sock, desc=Ref("issued", t.rid))
            sges, offset = self.fitting(data, sl, t)
            self.world.step("rdma_write" if write else "rdma_read", host=host, sock=sl.sock, sges=sges,
                            desc=Ref("issued", t.rid), offset=offset)

        def fitting(self, data, sl, t):
            """One buffer of local registration ``sl`` and an offset into target
            ``t`` that together fit both."""
            n = data.draw(st.integers(1, min(sl.length, t.length)))
            a = data.draw(st.integers(sl.addr, sl.addr + sl.length - n))
            offset = data.draw(often(st.integers(0, t.length - n), st.just(t.length - n)))
            return ((n, a, Ref("issued", sl.rid)),), offset

        @rule(data=st.data())
        def rdma_write(self, data):
            self._rdma(data, "rdma_write", MEM_READ)

        @precondition(lambda self: cfg.has_rdma_read)
        @rule(data=st.data())
        def rdma_read(self, data):
            self._rdma(data, "rdma_read", MEM_WRITE)

        @rule(data=st.data())
        def post_recv(self, data):
            host, sock = self.host_and_socket(data, need_target=False)
            if not (0 <= sock < cfg.sockets):
                return
            if not (self.state.hosts[host].eps[sock].recv == RECV_IDLE):
                return
            (length, addr, handle), = self.sges(data, host, sock, MEM_WRITE)[:1] or ((1, 0, Ref("garbage")),)
            self.world.step("post_recv", host=host, sock=sock, length=length, addr=addr, handle=handle)

        @rule(data=st.data())
        def send(self, data):
            host, sock = self.host_and_socket(data, need_target=False)
            if not (0 <= sock < cfg.sockets):
                return
            waiting = [(1 - h, s) for h in (0, 1) for s in range(cfg.sockets)
                       if self.state.hosts[h].eps[s].recv == RECV_POSTED]
            if waiting and data.draw(st.integers(0, 3)):  # mostly toward a posted receive
                host, sock = data.draw(st.sampled_from(waiting))
            ep, peer = self.state.hosts[host].eps[sock], self.state.hosts[1 - host].eps[sock]
            # a send to a peer with no posted receive would wait: the switch never does it (XFER-03)
            if not (ep.conn != CONNECTED or peer.recv == RECV_POSTED):
                return
            sges = self.sges(data, host, sock, MEM_READ)
            room = peer.recv_len
            if room and sum(n for n, _, _ in sges) > room and data.draw(st.integers(0, 3)):
                (n, a, ref), = sges[:1]  # mostly a message that fits the posted receive
                sges = ((max(1, min(n, room)), a, ref),)
            self.world.step("send", host=host, sock=sock, sges=sges)

        @rule(data=st.data())
        def recv_done(self, data):
            done = [(h, s) for h in (0, 1) for s in range(cfg.sockets) if self.state.hosts[h].eps[s].recv == RECV_DONE]
            if not done:
                return
            host, sock = data.draw(st.sampled_from(done))
            self.world.step("recv_done", host=host, sock=sock)

    return Lockstep
