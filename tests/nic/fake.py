"""A stand-in NIC for the host's tests of the NIC lockstep: RxeNic's methods
over an AccessModel of its own, with rxe's key layout (an index and a
random low byte, windows above the MRs' index range)."""

from __future__ import annotations

import itertools
import random

from sanspi.nic.access import REMOTE_READ, REMOTE_WRITE, AccessModel


class FakeNic:
    size = 4 * 4096

    def __init__(self, deviations: frozenset = frozenset(), model: type[AccessModel] = AccessModel) -> None:
        self.m = model(self.size, frozenset(deviations))
        self.rng = random.Random(1)
        self.mr_index = itertools.count(1)
        self.mw_index = itertools.count(0x80001)

    def reg_mr(self, h, pd, addr, length, access):
        lkey = next(self.mr_index) << 8 | self.rng.randrange(256)
        rkey = lkey if access & (REMOTE_READ | REMOTE_WRITE) else 0
        self.m.reg_mr(h, pd, addr, length, access, rkey)
        return rkey, lkey

    def dereg_mr(self, h):
        return self.m.dereg_mr(h).ok

    def alloc_mw(self, h, pd):
        key = next(self.mw_index) << 8 | self.rng.randrange(256)
        self.m.alloc_mw(h, pd, key)
        return key

    def dealloc_mw(self, h):
        self.m.dealloc_mw(h)

    def bind(self, h, mr, conn, addr, length, access, key):
        return self.m.bind(h, mr, conn, addr, length, access, key).ok

    def invalidate(self, conn, key):
        h = next(h for h, w in self.m.mws.items() if w.valid and w.key == key)
        return self.m.invalidate(h, conn, key).ok

    def access(self, conn, write, key, addr, length, data=b""):
        out = self.m.access(conn, write, key, addr, length, data)
        return out.ok, out.data

    def states(self, conn, expect=None):
        return list(self.m.up[conn])

    def reconnect(self, conn):
        self.m.reconnect(conn)

    def memory(self):
        return bytes(self.m.mem)

    def fill(self, data):
        self.m.mem[:] = data

    def close(self):
        pass
