"""Random operation sequences never raise inside the model and keep every
invariant and step property (the model checks them on each step it takes).

Arguments are drawn to alias: ids already handed out (live, cached, dead or
the peer's), addresses on page and registration boundaries, lengths of 0, 1,
a page and far too much.
"""

from __future__ import annotations

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sanspi.model.constants import FN_UNKNOWN
from sanspi.model.machine import Model
from sanspi.model.state import Config
from sanspi.model.transitions import TRANSITIONS, Sge

import pytest

PAGE = 4096
EDGE_INTS = st.sampled_from([-1, 0, 1, 2, 7, 8, 63, 64, PAGE - 1, PAGE, PAGE + 1, 2**32 - 1, 2**64])


def small_config():
    return st.builds(
        Config,
        pages=st.just(4), page_size=st.just(PAGE), slots=st.integers(1, 4), sockets=st.integers(1, 2),
        max_sge=st.integers(1, 3), has_rdma_read=st.booleans(), has_cache=st.booleans(),
        max_startups=st.integers(1, 3),
    )


def biased(good, bad):
    """Mostly ``good`` (valid-looking, aliasing what exists), sometimes ``bad``."""
    return st.integers(0, 7).flatmap(lambda r: bad if r == 7 else good)


def draw_args(draw, m: Model, name: str):
    cfg = m.cfg
    host = draw(st.integers(0, 1), label="host")
    sock = draw(biased(st.integers(0, cfg.sockets - 1), st.sampled_from([-1, cfg.sockets])), label="sock")
    regs = [sl for h in m.state.hosts for sl in h.slots if sl.used]
    # what this call could name: the host's own local registrations on the
    # socket, and the peer's RDMA registrations on it (live, cached or dead)
    mine = [sl for sl in m.state.hosts[host].slots if sl.used and sl.kind == 1 and sl.sock == sock]
    theirs = [sl for sl in m.state.hosts[1 - host].slots if sl.used and sl.kind == 2 and sl.sock == sock]
    issued = sorted({sl.rid for sl in regs} | {m.state.next_id - 1})
    ids = biased(st.sampled_from(issued), st.integers(-1, m.state.next_id + 1))
    bounds = [sl.addr for sl in regs] + [sl.addr + sl.length for sl in regs] + [0, PAGE, 2 * PAGE]
    addrs = biased(st.sampled_from(bounds) | st.integers(0, 3 * PAGE), EDGE_INTS)
    lengths = biased(st.integers(1, 300) | st.sampled_from([PAGE - 1, PAGE]), EDGE_INTS)

    @st.composite
    def sge(draw):
        if mine and draw(st.integers(0, 3)):
            sl = draw(st.sampled_from(mine))
            start = draw(st.integers(sl.addr, sl.addr + sl.length - 1))
            return Sge(length=draw(st.integers(1, max(1, min(64, sl.addr + sl.length - start)))), addr=start,
                       handle=sl.rid)
        return Sge(handle=draw(ids), addr=draw(addrs), length=draw(lengths))

    fields = {
        "host": st.just(host), "sock": st.just(sock),
        "conn": st.integers(0, cfg.sockets - 1),
        "major": st.integers(0, 3), "minor": st.integers(0, 3), "data_ok": st.booleans(), "table_ok": st.booleans(),
        "fn": st.integers(-1, FN_UNKNOWN), "outlen": st.sampled_from([0, 4, 8, 16]),
        "page": st.integers(0, cfg.pages - 1), "npages": st.integers(1, 2),
        "addr": addrs, "length": lengths, "size": lengths, "seed": st.integers(0, 255),
        "flags": biased(st.sampled_from([1, 2, 3]), st.sampled_from([0, 4, -1])),
        "desc_len": biased(st.just(cfg.descriptor_size), st.sampled_from([0, cfg.descriptor_size - 1])),
        "rid": ids, "handle": ids,
        "desc": biased(st.sampled_from([sl.rid for sl in theirs]), ids) if theirs else ids,
        "offset": biased(st.integers(0, 64), EDGE_INTS),
        "sges": biased(st.lists(sge(), min_size=1, max_size=cfg.max_sge),
                       st.lists(sge(), min_size=0, max_size=cfg.max_sge + 1)).map(tuple),
        "choice": st.just(0),
    }
    t = TRANSITIONS[name]
    return t.args(**{f.name: draw(fields[f.name]) for f in attrs.fields(t.args)})


@pytest.mark.clause("REG-07", "CONN-01", "CACHE-04", "MEM-04")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_sequences_keep_invariants(data):
    m = Model(data.draw(small_config(), label="config"))
    if data.draw(st.integers(0, 9), label="cold start?") != 9:
        # most interesting behaviour needs started providers, connections and memory
        for h in (0, 1):
            m.call("startup_ex", host=h, major=2, minor=2)
            m.call("alloc", host=h, page=0, npages=3)
        for conn in range(m.cfg.sockets):
            m.call("connect", conn=conn)
    # Calls that do the work come often; events that tear things down rarely.
    weights = {"close": 1, "free": 1, "connect": 2, "startup_ex": 1, "get_extension": 1}
    names = [n for n in sorted(TRANSITIONS) for _ in range(weights.get(n, 4))]
    taken = 0
    for _ in range(60):
        name = data.draw(st.sampled_from(names), label="transition")
        args = draw_args(data.draw, m, name)
        outcomes = m.outcomes(name, args)  # runs every invariant and step property
        if outcomes:
            m.take(data.draw(st.sampled_from(outcomes), label="outcome"))
            taken += 1
    assert m.state.next_id >= 1
