"""One small scenario per spec clause, run on the executable model.

Each test names the clause(s) it shows; `sanspi spec` reads these markers.
The model checks every invariant and step property on each step it takes,
so these scenarios also exercise those checks.
"""

from __future__ import annotations

import pytest

from sanspi.model.constants import (
    AT_CALL,
    CLOSED,
    CONNECTED,
    ERRORED,
    FN_CACHE_CALLBACK,
    FN_RDMA_READ,
    FN_RDMA_WRITE,
    FN_REGISTER_MEMORY,
    FN_UNKNOWN,
    GUIDS,
    MEM_READ,
    MEM_READWRITE,
    MEM_WRITE,
    OK,
    RECV_DONE,
    REFUSED_BY_PEER,
    WSA_IO_PENDING,
    WSA_OPERATION_ABORTED,
    WSAECONNABORTED,
    WSAECONNRESET,
    WSAEFAULT,
    WSAEINPROGRESS,
    WSAEINVAL,
    WSAENOBUFS,
    WSAENOTCONN,
    WSAEOPNOTSUPP,
    WSAEPROCLIM,
    WSASYSNOTREADY,
    WSAVERNOTSUPPORTED,
    function_index,
)
from sanspi.model.machine import Model, NotEnabled, make_args
from sanspi.model.ops import pattern_byte
from sanspi.model.state import Config

from .conftest import PAGE, ready_model, reg, rreg

clause = pytest.mark.clause


def fill(m: Model, host: int, addr: int, length: int, seed: int) -> bytes:
    m.call("app_write", host=host, addr=addr, length=length, seed=seed)
    return bytes(pattern_byte(seed, i) for i in range(length))


def statuses(m: Model, name: str, **kw) -> set[int]:
    return {s.status for s in m.outcomes(name, make_args(name, **kw))}


# --- extensions -----------------------------------------------------------


@clause("EXT-01")
def test_ext01_every_guid_resolves(m):
    for fn, guid in GUIDS.items():
        assert function_index(guid) == fn
        step = m.call("get_extension", host=0, fn=fn)
        assert (step.status, step.result) == (OK, fn)


@clause("EXT-02")
def test_ext02_unknown_guid(m):
    assert function_index(b"\x00" * 16) == FN_UNKNOWN
    assert function_index(b"short") == FN_UNKNOWN
    assert m.call("get_extension", host=0, fn=FN_UNKNOWN).status == WSAEINVAL
    assert m.call("get_extension", host=0, fn=-1).status == WSAEINVAL


@clause("EXT-03")
def test_ext03_optional_functions_absent():
    m = ready_model(Config(has_rdma_read=False, has_cache=False))
    assert m.call("get_extension", host=0, fn=FN_RDMA_READ).status == WSAEOPNOTSUPP
    assert m.call("get_extension", host=0, fn=FN_CACHE_CALLBACK).status == WSAEOPNOTSUPP
    assert m.call("get_extension", host=0, fn=FN_RDMA_WRITE).status == OK
    # and the model then never runs them
    h = reg(m)
    assert not m.enabled("rdma_read", make_args("rdma_read", host=0, sock=0, sges=[(8, 0, h)], desc=1, offset=0))
    assert not m.enabled("cache_callback", make_args("cache_callback", host=0, addr=0, size=PAGE))


@clause("EXT-04")
def test_ext04_output_buffer_too_small(m):
    assert m.call("get_extension", host=0, fn=FN_REGISTER_MEMORY, outlen=7).status == WSAEFAULT
    # the size check comes before the GUID check
    assert m.call("get_extension", host=0, fn=FN_UNKNOWN, outlen=0).status == WSAEFAULT


def test_lookup_needs_startup():
    m = Model()
    with pytest.raises(NotEnabled):
        m.call("get_extension", host=0, fn=FN_REGISTER_MEMORY)


# --- startup ----------------------------------------------------------------


@clause("START-01")
def test_start01_version_negotiation():
    m = Model()
    assert m.call("startup_ex", host=0, major=2, minor=2).result == 0x0202
    assert m.call("startup_ex", host=0, major=3, minor=0).result == 0x0202  # highest we have
    assert m.call("startup_ex", host=0, major=2, minor=9).result == 0x0202
    assert m.state.hosts[0].startups == 3


@clause("START-02")
def test_start02_not_ready():
    m = Model(Config(ready=False))
    step = m.call("startup_ex", host=0, major=2, minor=2)
    assert step.status == WSASYSNOTREADY and m.state.hosts[0].startups == 0


@clause("START-03")
def test_start03_bad_pointers():
    m = Model()
    assert m.call("startup_ex", host=0, major=2, minor=2, data_ok=False).status == WSAEFAULT
    assert m.call("startup_ex", host=0, major=2, minor=2, table_ok=False).status == WSAEFAULT
    assert m.state.hosts[0].startups == 0


@clause("START-04")
def test_start04_startup_limit():
    m = Model(Config(max_startups=2))
    assert [m.call("startup_ex", host=1, major=2, minor=2).status for _ in range(3)] == [OK, OK, WSAEPROCLIM]


@clause("START-05")
def test_start05_version_too_low():
    m = Model()
    assert m.call("startup_ex", host=0, major=1, minor=1).status == WSAVERNOTSUPPORTED
    assert m.call("startup_ex", host=0, major=2, minor=1).status == WSAVERNOTSUPPORTED  # 2.2 is the least
    assert m.state.hosts[0].startups == 0


@clause("START-06")
def test_start06_never_in_progress():
    m = Model(Config(max_startups=3))
    seen = {m.call("startup_ex", host=0, major=major, minor=minor).status
            for major in (0, 1, 2, 3, 255) for minor in (0, 2, 255)}
    assert WSAEINPROGRESS not in seen and {OK, WSAVERNOTSUPPORTED, WSAEPROCLIM} <= seen


# --- sockets ----------------------------------------------------------------


@clause("SOCK-01")
def test_sock01_connect_joins_both_ends():
    m = Model()
    for h in (0, 1):
        m.call("startup_ex", host=h, major=2, minor=2)
    m.call("connect", conn=1)
    assert [h.eps[1].conn for h in m.state.hosts] == [CONNECTED, CONNECTED]
    assert [h.eps[0].conn for h in m.state.hosts] == [CLOSED, CLOSED]
    with pytest.raises(NotEnabled):
        m.call("connect", conn=1)  # already up


@clause("SOCK-02", "CACHE-06")
def test_sock02_close_releases_registrations(m):
    h = reg(m, host=0, sock=0)
    d = rreg(m, host=1, sock=0)
    other = reg(m, host=0, sock=1)
    m.call("deregister_memory", host=0, sock=0, rid=h)  # now cached
    assert any(s.used for s in m.state.hosts[0].slots if s.rid == h)
    m.call("close", conn=0)
    assert not any(s.used and s.sock == 0 for host in m.state.hosts for s in host.slots)
    assert any(s.used and s.rid == other for s in m.state.hosts[0].slots)
    m.call("connect", conn=0)
    # nothing from before the close works on the new connection
    assert m.call("deregister_memory", host=0, sock=0, rid=h).status == WSAEINVAL
    assert m.call("deregister_rdma_memory", host=1, sock=0, rid=d).status == WSAEINVAL


# --- address space ------------------------------------------------------------


@clause("MEM-01")
def test_mem01_realloc_is_zero_filled(m):
    fill(m, 0, PAGE * 4 - 10, 10, seed=9)
    m.call("free", host=0, page=3, npages=1)
    assert not m.state.hosts[0].mapped[3]
    m.call("alloc", host=0, page=3, npages=1)
    assert m.memory(0, 3 * PAGE, PAGE) == bytes(PAGE)
    with pytest.raises(NotEnabled):
        m.call("alloc", host=0, page=3, npages=1)  # already mapped


@clause("MEM-02", "REG-04")
def test_mem02_registration_needs_mapped_memory(m):
    def status(addr, length):
        return m.call("register_memory", host=0, sock=0, addr=addr, length=length, flags=MEM_READ).status

    assert status(4 * PAGE - 1, 2) == WSAEFAULT  # runs into an unmapped page
    assert status(-1, 10) == WSAEFAULT
    assert status(2**64 - 1, 2) == WSAEFAULT  # address + length overflows
    assert status(0, 2**40) == WSAEFAULT  # huge length
    assert status(7 * PAGE, 1) == WSAEFAULT  # never mapped
    assert status(4 * PAGE - 1, 1) == OK  # last mapped byte


@clause("MEM-03")
def test_mem03_app_write_pattern(m):
    expect = fill(m, 1, 100, 300, seed=250)
    assert m.memory(1, 100, 300) == expect
    assert m.memory(1, 99, 1) == b"\0" and m.memory(1, 400, 1) == b"\0"
    assert m.memory(0, 100, 300) == bytes(300)


@clause("MEM-04", "CACHE-04")
def test_mem04_free_calls_the_callback_first(m):
    h = reg(m, addr=PAGE, length=10)
    with pytest.raises(NotEnabled):  # the switch never frees what it has registered
        m.call("free", host=0, page=1, npages=1)
    m.call("deregister_memory", host=0, sock=0, rid=h)  # cached: still pinned
    step = m.call("free", host=0, page=1, npages=1)
    assert step.status == OK  # the callback released the cached registration
    assert not m.state.hosts[0].mapped[1]
    assert not any(s.used for s in m.state.hosts[0].slots)
    # nothing cached there: the callback says so, the memory is freed anyway
    step = m.call("free", host=0, page=2, npages=1)
    assert step.status == WSAEINVAL and not m.state.hosts[0].mapped[2]


def test_free_without_cache_has_no_callback():
    m = ready_model(Config(has_cache=False))
    assert m.call("free", host=0, page=0, npages=1).status == OK


# --- access ---------------------------------------------------------------------


@clause("ACC-01", "REG-02")
def test_acc01_bad_flags(m):
    for flags in (0, 4, 7, -1, 2**32):
        assert m.call("register_memory", host=0, sock=0, addr=0, length=8, flags=flags).status == WSAEINVAL
        assert m.call("register_rdma_memory", host=0, sock=0, addr=0, length=8, flags=flags,
                      desc_len=64).status == WSAEINVAL
    for flags in (MEM_READ, MEM_WRITE, MEM_READWRITE):
        assert m.call("register_memory", host=0, sock=0, addr=0, length=8, flags=flags).status == OK


@clause("ACC-02", "RREG-06", "RDMA-05", "RDMA-08")
def test_acc02_remote_permissions(m):
    src = reg(m, host=0, flags=MEM_READWRITE)
    ro = rreg(m, host=1, addr=0, length=64, flags=MEM_READ)
    wo = rreg(m, host=1, addr=64, length=64, flags=MEM_WRITE)
    w = dict(host=0, sock=0, sges=[(8, 0, src)], offset=0)
    assert statuses(m, "rdma_write", desc=ro, **w) == {WSAEINVAL, WSAECONNRESET}
    assert statuses(m, "rdma_read", desc=wo, **w) == {WSAEINVAL, WSAECONNRESET}
    assert statuses(m, "rdma_write", desc=wo, **w) == {OK}
    assert statuses(m, "rdma_read", desc=ro, **w) == {OK}


@clause("ACC-03", "RDMA-04")
def test_acc03_local_access(m):
    read_only = reg(m, host=0, addr=0, length=64, flags=MEM_READ)
    write_only = reg(m, host=0, addr=64, length=64, flags=MEM_WRITE)
    d = rreg(m, host=1, flags=MEM_READWRITE)
    # a write's source needs MEM_READ; a read's sink needs MEM_WRITE
    assert statuses(m, "rdma_write", host=0, sock=0, sges=[(8, 64, write_only)], desc=d, offset=0) == {WSAEINVAL}
    assert statuses(m, "rdma_read", host=0, sock=0, sges=[(8, 0, read_only)], desc=d, offset=0) == {WSAEINVAL}
    assert statuses(m, "rdma_write", host=0, sock=0, sges=[(8, 0, read_only)], desc=d, offset=0) == {OK}


# --- WSPRegisterMemory ----------------------------------------------------------


@clause("REG-01", "RREG-01")
def test_reg01_socket_not_connected(m):
    for sock in (2, -1, 10**9):  # no such connection
        assert m.call("register_memory", host=0, sock=sock, addr=0, length=8, flags=MEM_READ).status == WSAENOTCONN
    m.call("close", conn=1)
    assert m.call("register_memory", host=0, sock=1, addr=0, length=8, flags=MEM_READ).status == WSAENOTCONN
    assert m.call("register_rdma_memory", host=0, sock=1, addr=0, length=8, flags=MEM_READ,
                  desc_len=64).status == WSAENOTCONN
    # the socket is checked before anything else
    assert m.call("register_memory", host=0, sock=1, addr=-5, length=0, flags=9).status == WSAENOTCONN


@clause("REG-03")
def test_reg03_zero_length(m):
    assert m.call("register_memory", host=0, sock=0, addr=0, length=0, flags=MEM_READ).status == WSAEINVAL
    assert m.call("register_rdma_memory", host=0, sock=0, addr=0, length=0, flags=MEM_READ,
                  desc_len=64).status == WSAEINVAL
    assert m.call("register_memory", host=0, sock=0, addr=0, length=-3, flags=MEM_READ).status == WSAEINVAL


@clause("REG-05", "DEREG-02")
def test_reg05_same_buffer_counts(m):
    h1 = reg(m, addr=0, length=100, flags=MEM_READ)
    h2 = reg(m, addr=0, length=100, flags=MEM_READ)
    assert h1 == h2
    assert [s.refs for s in m.state.hosts[0].slots if s.rid == h1] == [2]
    assert m.call("deregister_memory", host=0, sock=0, rid=h1).status == OK
    assert [s.refs for s in m.state.hosts[0].slots if s.rid == h1] == [1]
    # still usable after one of the two references is gone
    d = rreg(m)
    assert statuses(m, "rdma_write", host=0, sock=0, sges=[(10, 0, h1)], desc=d, offset=0) == {OK}
    # a different length or flags is a different registration
    assert reg(m, addr=0, length=99, flags=MEM_READ) != h1
    assert reg(m, addr=0, length=100, flags=MEM_READWRITE) != h1


@clause("REG-06", "DEREG-01")
def test_reg06_handle_only_on_its_socket(m):
    h = reg(m, sock=0)
    d = rreg(m, host=1, sock=1)
    assert m.call("deregister_memory", host=0, sock=1, rid=h).status == WSAEINVAL
    assert statuses(m, "rdma_write", host=0, sock=1, sges=[(8, 0, h)], desc=d, offset=0) == {WSAEINVAL}
    # a foreign handle (the peer's), garbage, and a deregistered one
    peer = reg(m, host=1, sock=0)
    for bad in (peer, 0, 999, -7):
        assert m.call("deregister_memory", host=0, sock=0, rid=bad).status == WSAEINVAL
    assert m.call("deregister_memory", host=0, sock=0, rid=h).status == OK
    assert m.call("deregister_memory", host=0, sock=0, rid=h).status == WSAEINVAL


@clause("REG-07")
def test_reg07_ids_unique(m):
    ids = [reg(m, host=h, sock=s, addr=a, length=16) for h in (0, 1) for s in (0, 1) for a in (0, 16)]
    ids += [rreg(m, host=h, sock=0, addr=64, length=16) for h in (0, 1)]
    assert len(set(ids)) == len(ids)
    assert all(i >= 1 for i in ids)


@clause("REG-08")
def test_reg08_other_socket_other_registration(m):
    a = reg(m, sock=0, addr=0, length=64)
    b = reg(m, sock=1, addr=0, length=64)
    assert a != b
    assert m.call("deregister_memory", host=0, sock=0, rid=a).status == OK
    assert m.call("deregister_memory", host=0, sock=1, rid=b).status == OK


@clause("REG-09", "RREG-05")
def test_reg09_table_full():
    m = ready_model(Config(slots=2))
    reg(m, addr=0, length=8)
    reg(m, addr=8, length=8)
    assert m.call("register_memory", host=0, sock=0, addr=16, length=8, flags=MEM_READ).status == WSAENOBUFS
    assert m.call("register_rdma_memory", host=0, sock=0, addr=16, length=8, flags=MEM_READ,
                  desc_len=64).status == WSAENOBUFS
    # the other host has its own table
    assert m.call("register_memory", host=1, sock=0, addr=16, length=8, flags=MEM_READ).status == OK
    # a repeat of a registered buffer needs no new entry
    assert m.call("register_memory", host=0, sock=0, addr=0, length=8, flags=MEM_READWRITE).status == OK


# --- WSPDeregisterMemory --------------------------------------------------------


@clause("DEREG-03", "XFER-02")
def test_dereg03_in_use_by_posted_receive(m):
    h = reg(m, host=1, flags=MEM_WRITE)
    assert m.call("post_recv", host=1, sock=0, handle=h, addr=0, length=64).status == WSA_IO_PENDING
    assert m.call("deregister_memory", host=1, sock=0, rid=h).status == WSAEINVAL
    src = reg(m, host=0, flags=MEM_READ)
    m.call("send", host=0, sock=0, sges=[(10, 0, src)])
    done = m.call("recv_done", host=1, sock=0)
    assert (done.status, done.result) == (OK, 10)
    assert m.call("deregister_memory", host=1, sock=0, rid=h).status == OK


@clause("DEREG-04", "CACHE-01")
def test_dereg04_last_reference_without_cache():
    m = ready_model(Config(has_cache=False))
    h = reg(m)
    m.call("deregister_memory", host=0, sock=0, rid=h)
    assert not any(s.used for s in m.state.hosts[0].slots)
    assert reg(m) != h  # a new registration, a new handle


# --- WSPRegisterRdmaMemory -------------------------------------------------------


@clause("RREG-02", "RDMA-05")
def test_rreg02_descriptor_only_on_its_connection(m):
    d = rreg(m, host=1, sock=0)
    src1 = reg(m, host=0, sock=1)
    assert statuses(m, "rdma_write", host=0, sock=1, sges=[(8, 0, src1)], desc=d, offset=0) == {
        WSAEINVAL, WSAECONNRESET}
    # the registering host cannot target its own buffer either
    own = reg(m, host=1, sock=0)
    assert statuses(m, "rdma_write", host=1, sock=0, sges=[(8, 0, own)], desc=d, offset=0) == {
        WSAEINVAL, WSAECONNRESET}


@clause("RREG-03")
def test_rreg03_descriptor_length_negotiation(m):
    size = m.cfg.descriptor_size
    step = m.call("register_rdma_memory", host=1, sock=0, addr=0, length=8, flags=MEM_READ, desc_len=size - 1)
    assert (step.status, step.result) == (WSAEFAULT, size)
    assert not any(s.used for s in m.state.hosts[1].slots)
    step = m.call("register_rdma_memory", host=1, sock=0, addr=0, length=8, flags=MEM_READ, desc_len=size)
    assert step.status == OK and step.result >= 1
    # a bad range is WSAEFAULT too, but names no size
    step = m.call("register_rdma_memory", host=1, sock=0, addr=-1, length=8, flags=MEM_READ, desc_len=0)
    assert (step.status, step.result) == (WSAEFAULT, 0)


@clause("RREG-04", "RDEREG-03")
def test_rreg04_rdma_refcount(m):
    d1 = rreg(m, addr=0, length=64)
    assert rreg(m, addr=0, length=64) == d1
    src = reg(m, host=0)
    assert m.call("deregister_rdma_memory", host=1, sock=0, rid=d1).status == OK
    assert statuses(m, "rdma_write", host=0, sock=0, sges=[(8, 0, src)], desc=d1, offset=0) == {OK}
    assert m.call("deregister_rdma_memory", host=1, sock=0, rid=d1).status == OK
    assert WSAECONNRESET in statuses(m, "rdma_write", host=0, sock=0, sges=[(8, 0, src)], desc=d1, offset=0)


# --- WSPDeregisterRdmaMemory -------------------------------------------------------


@clause("RDEREG-01")
def test_rdereg01_not_a_live_rdma_registration(m):
    d = rreg(m, host=1, sock=0)
    h = reg(m, host=1, sock=0)
    for sock, rid in ((0, h), (1, d), (0, 0), (0, d + 100)):
        assert m.call("deregister_rdma_memory", host=1, sock=sock, rid=rid).status == WSAEINVAL
    assert m.call("deregister_rdma_memory", host=0, sock=0, rid=d).status == WSAEINVAL  # the peer's
    assert m.call("deregister_rdma_memory", host=1, sock=0, rid=d).status == OK


@clause("RDEREG-02", "CACHE-03")
def test_rdereg02_revoked_even_while_cached(m):
    d = rreg(m, host=1, addr=0, length=64)
    src = reg(m, host=0)
    m.call("deregister_rdma_memory", host=1, sock=0, rid=d)
    assert any(s.used and s.refs == 0 for s in m.state.hosts[1].slots)  # cached
    assert OK not in statuses(m, "rdma_write", host=0, sock=0, sges=[(8, 0, src)], desc=d, offset=0)
    # re-registered from the cache: a new descriptor; the old one stays dead
    d2 = rreg(m, host=1, addr=0, length=64)
    assert d2 != d
    assert OK not in statuses(m, "rdma_write", host=0, sock=0, sges=[(8, 0, src)], desc=d, offset=0)
    assert statuses(m, "rdma_write", host=0, sock=0, sges=[(8, 0, src)], desc=d2, offset=0) == {OK}


# --- the registration cache ------------------------------------------------------


@clause("CACHE-02")
def test_cache02_local_hit_returns_handle(m):
    h = reg(m, addr=0, length=128, flags=MEM_READ)
    m.call("deregister_memory", host=0, sock=0, rid=h)
    assert m.call("deregister_memory", host=0, sock=0, rid=h).status == WSAEINVAL  # not live
    before = m.state.next_id
    assert reg(m, addr=0, length=128, flags=MEM_READ) == h
    assert m.state.next_id == before  # nothing new was registered
    # only an exact match is a hit
    assert reg(m, addr=0, length=64, flags=MEM_READ) != h


@clause("CACHE-04")
def test_cache04_callback_releases_overlapping(m):
    a = reg(m, addr=0, length=100)
    b = reg(m, addr=PAGE, length=100)
    for h in (a, b):
        m.call("deregister_memory", host=0, sock=0, rid=h)
    # a range touching one byte of the first entry releases all of it
    assert m.call("cache_callback", host=0, addr=99, size=1).status == OK
    slots = [s for s in m.state.hosts[0].slots if s.used]
    assert [s.rid for s in slots] == [b]
    assert reg(m, addr=0, length=100) != a  # a fresh registration after the release


@clause("CACHE-05")
def test_cache05_callback_refusals(m):
    assert m.call("cache_callback", host=0, addr=0, size=PAGE).status == WSAEINVAL  # nothing cached
    live = reg(m, addr=0, length=64)
    cached = reg(m, addr=64, length=64)
    m.call("deregister_memory", host=0, sock=0, rid=cached)
    assert m.call("cache_callback", host=0, addr=0, size=128).status == WSAEFAULT  # live one pinned
    assert any(s.used and s.rid == cached for s in m.state.hosts[0].slots)  # all or nothing
    assert m.call("cache_callback", host=0, addr=64, size=0).status == WSAEINVAL  # empty range
    assert m.call("cache_callback", host=0, addr=64, size=1).status == OK
    assert any(s.rid == live and s.used for s in m.state.hosts[0].slots)


# --- RDMA -----------------------------------------------------------------------------


@clause("RDMA-01", "RDMA-06")
def test_rdma06_write_moves_bytes_in_order(m):
    a = fill(m, 0, 0, 30, seed=1)
    b = fill(m, 0, 500, 20, seed=77)
    src = reg(m, host=0, addr=0, length=1024, flags=MEM_READ)
    d = rreg(m, host=1, addr=PAGE, length=256, flags=MEM_WRITE)
    step = m.call("rdma_write", host=0, sock=0, sges=[(30, 0, src), (20, 500, src)], desc=d, offset=7)
    assert (step.status, step.result) == (OK, 50)
    assert m.memory(1, PAGE + 7, 50) == a + b
    assert m.memory(1, PAGE, 7) == bytes(7) and m.memory(1, PAGE + 57, 10) == bytes(10)


@clause("RDMA-07", "RDMA-01")
def test_rdma07_read_moves_bytes_in_order(m):
    remote = fill(m, 1, 2 * PAGE, 64, seed=33)
    d = rreg(m, host=1, addr=2 * PAGE, length=64, flags=MEM_READ)
    sink = reg(m, host=0, addr=0, length=PAGE, flags=MEM_WRITE)
    step = m.call("rdma_read", host=0, sock=0, sges=[(5, 10, sink), (11, 100, sink)], desc=d, offset=48)
    assert (step.status, step.result) == (OK, 16)
    assert m.memory(0, 10, 5) == remote[48:53] and m.memory(0, 100, 11) == remote[53:64]
    assert m.memory(1, 2 * PAGE, 64) == remote


@clause("RDMA-02", "CONN-02")
def test_rdma02_connection_must_be_up(m):
    src = reg(m, host=0)
    d = rreg(m, host=1)
    args = dict(host=0, sges=[(8, 0, src)], desc=d, offset=0)
    assert statuses(m, "rdma_write", sock=5, **args) == {WSAENOTCONN}
    # fail the connection, then everything on it gets WSAECONNABORTED
    m.call("rdma_write", host=0, sock=0, sges=[(8, 0, src)], desc=d + 50, offset=0, choice=REFUSED_BY_PEER)
    assert statuses(m, "rdma_write", sock=0, **args) == {WSAECONNABORTED}
    assert statuses(m, "rdma_read", sock=0, **args) == {WSAECONNABORTED}
    assert m.call("register_memory", host=0, sock=0, addr=0, length=8, flags=MEM_READ).status == WSAENOTCONN
    assert m.call("deregister_memory", host=0, sock=0, rid=src).status == OK  # clean-up still works
    m.call("close", conn=0)
    assert statuses(m, "rdma_write", sock=0, **args) == {WSAENOTCONN}


@clause("RDMA-03")
def test_rdma03_buffer_count(m):
    src = reg(m, host=0)
    d = rreg(m, host=1)
    assert statuses(m, "rdma_write", host=0, sock=0, sges=[], desc=d, offset=0) == {WSAEINVAL}
    many = [(1, i, src) for i in range(m.cfg.max_sge + 1)]
    assert statuses(m, "rdma_write", host=0, sock=0, sges=many, desc=d, offset=0) == {WSAEINVAL}
    assert statuses(m, "rdma_write", host=0, sock=0, sges=many[:-1], desc=d, offset=0) == {OK}


@clause("RDMA-04")
def test_rdma04_local_buffer_checks_in_order(m):
    src = reg(m, host=0, addr=0, length=64, flags=MEM_READ)
    d = rreg(m, host=1)
    w = dict(host=0, sock=0, desc=d, offset=0)
    assert statuses(m, "rdma_write", sges=[(8, 0, src + 99)], **w) == {WSAEINVAL}  # not a handle
    assert statuses(m, "rdma_write", sges=[(0, 0, src)], **w) == {WSAEINVAL}  # zero length
    assert statuses(m, "rdma_write", sges=[(5, 60, src)], **w) == {WSAEFAULT}  # runs past the end
    assert statuses(m, "rdma_write", sges=[(5, -1, src)], **w) == {WSAEFAULT}  # starts before
    # the first bad buffer names the error
    assert statuses(m, "rdma_write", sges=[(5, 60, src), (1, 0, 0)], **w) == {WSAEFAULT}


@clause("RDMA-05", "RDMA-08")
def test_rdma05_target_bounds(m):
    src = reg(m, host=0)
    d = rreg(m, host=1, addr=0, length=64)
    w = dict(host=0, sock=0, sges=[(8, 0, src)], desc=d)
    assert statuses(m, "rdma_write", offset=56, **w) == {OK}  # the last 8 bytes
    assert statuses(m, "rdma_write", offset=57, **w) == {WSAEINVAL, WSAECONNRESET}  # one past
    assert statuses(m, "rdma_write", offset=2**32 - 1, **w) == {WSAEINVAL, WSAECONNRESET}
    assert statuses(m, "rdma_write", offset=-1, **w) == {WSAEINVAL, WSAECONNRESET}


@clause("RDMA-08")
def test_rdma08_refused_outcomes_change_nothing_or_fail_connection(m):
    src = reg(m, host=0)
    fill(m, 0, 0, 8, seed=5)
    args = make_args("rdma_write", host=0, sock=0, sges=[(8, 0, src)], desc=12345, offset=0)
    invalid, reset = m.outcomes("rdma_write", args)
    # the same two, asked for by name
    assert (m.outcome("rdma_write", args, AT_CALL), m.outcome("rdma_write", args, REFUSED_BY_PEER)) == (
        invalid, reset)
    assert invalid.status == WSAEINVAL and invalid.next == m.state
    assert reset.status == WSAECONNRESET
    assert [h.mem for h in reset.next.hosts] == [h.mem for h in m.state.hosts]
    assert [h.eps[0].conn for h in reset.next.hosts] == [ERRORED, ERRORED]
    d = rreg(m)
    fits = make_args("rdma_write", host=0, sock=0, sges=[(8, 0, src)], desc=d, offset=0)
    assert m.outcome("rdma_write", fits, REFUSED_BY_PEER) is None  # a determined outcome has no second
    assert m.outcome("rdma_write", fits, AT_CALL).status == OK
    assert m.outcome("register_memory", make_args("register_memory", host=0, sock=0, addr=0, length=8,
                                                  flags=MEM_READ), REFUSED_BY_PEER) is None
    with pytest.raises(NotEnabled, match="refused by the peer"):
        m.call("rdma_write", host=0, sock=0, sges=[(8, 0, src)], desc=d, offset=0, choice=REFUSED_BY_PEER)


# --- connection errors -----------------------------------------------------------------


@clause("CONN-01")
def test_conn01_failure_errors_both_ends_and_flushes(m):
    sink = reg(m, host=1, flags=MEM_WRITE)
    m.call("post_recv", host=1, sock=0, handle=sink, addr=0, length=64)
    src = reg(m, host=0)
    step = m.call("rdma_write", host=0, sock=0, sges=[(8, 0, src)], desc=0, offset=0, choice=REFUSED_BY_PEER)
    assert step.status == WSAECONNRESET
    assert [h.eps[0].conn for h in m.state.hosts] == [ERRORED, ERRORED]
    assert [h.eps[1].conn for h in m.state.hosts] == [CONNECTED, CONNECTED]  # the other connection
    assert m.state.hosts[1].eps[0].recv == RECV_DONE
    done = m.call("recv_done", host=1, sock=0)
    assert (done.status, done.result) == (WSA_OPERATION_ABORTED, 0)


@clause("CONN-02")
def test_conn02_peer_sees_the_error_too(m):
    src = reg(m, host=0)
    peer_src = reg(m, host=1, flags=MEM_READWRITE)
    d = rreg(m, host=0)
    m.call("rdma_write", host=0, sock=0, sges=[(8, 0, src)], desc=0, offset=0, choice=REFUSED_BY_PEER)
    assert statuses(m, "rdma_write", host=1, sock=0, sges=[(8, 0, peer_src)], desc=d, offset=0) == {
        WSAECONNABORTED}
    assert m.call("post_recv", host=1, sock=0, handle=peer_src, addr=0, length=8).status == WSAECONNABORTED
    assert m.call("send", host=1, sock=0, sges=[(8, 0, peer_src)]).status == WSAECONNABORTED
    assert m.call("deregister_rdma_memory", host=0, sock=0, rid=d).status == OK


# --- send and receive ---------------------------------------------------------------------


@clause("XFER-01")
def test_xfer01_buffers_checked(m):
    ro = reg(m, host=1, addr=0, length=64, flags=MEM_READ)
    assert m.call("post_recv", host=1, sock=0, handle=ro, addr=0, length=8).status == WSAEINVAL
    rw = reg(m, host=1, addr=0, length=64, flags=MEM_READWRITE)
    assert m.call("post_recv", host=1, sock=0, handle=rw, addr=60, length=8).status == WSAEFAULT
    assert m.call("post_recv", host=1, sock=1, handle=rw, addr=0, length=8).status == WSAEINVAL
    assert m.call("post_recv", host=1, sock=4, handle=rw, addr=0, length=8).status == WSAENOTCONN
    wo = reg(m, host=0, addr=0, length=64, flags=MEM_WRITE)
    assert m.call("send", host=0, sock=0, sges=[(8, 0, wo)]).status == WSAEINVAL


@clause("XFER-03")
def test_xfer03_send_delivers(m):
    data = fill(m, 0, 0, 40, seed=3)
    src = reg(m, host=0, flags=MEM_READ)
    sink = reg(m, host=1, addr=PAGE, length=PAGE, flags=MEM_WRITE)
    send_args = make_args("send", host=0, sock=0, sges=[(40, 0, src)])
    assert not m.enabled("send", send_args)  # no receive posted: it would wait
    m.call("post_recv", host=1, sock=0, handle=sink, addr=PAGE + 1, length=40)
    step = m.call("send", host=0, sock=0, sges=[(20, 0, src), (20, 20, src)])
    assert (step.status, step.result) == (OK, 40)
    assert m.memory(1, PAGE + 1, 40) == data
    assert m.call("recv_done", host=1, sock=0).result == 40
    # larger than the posted receive: the connection fails
    m.call("post_recv", host=1, sock=0, handle=sink, addr=PAGE, length=10)
    assert m.call("send", host=0, sock=0, sges=[(11, 0, src)]).status == WSAECONNRESET
    assert m.state.hosts[0].eps[0].conn == ERRORED
    assert m.call("recv_done", host=1, sock=0).status == WSA_OPERATION_ABORTED
