"""The access model's rules (nic/access.py), one test each: what the verbs
provider relies on the NIC for, stated so that each can fail."""

from __future__ import annotations

import pytest

from sanspi.nic.access import LOCAL_WRITE, MW_BIND, REMOTE_READ, REMOTE_WRITE, AccessModel

SIZE = 4 * 4096
RW = REMOTE_READ | REMOTE_WRITE


def owner(*deviations: str) -> AccessModel:
    """MR 1: [0, 8192) in PD 0, bindable; window 2 in PD 0 bound on
    connection 0 over [1024, 2048) with key 0x8000107."""
    m = AccessModel(SIZE, frozenset(deviations))
    m.reg_mr(1, 0, 0, 8192, MW_BIND | LOCAL_WRITE, 0)
    m.alloc_mw(2, 0, 0x8000100)
    assert m.bind(2, 1, 0, 1024, 1024, RW, 0x07).ok
    return m


@pytest.mark.clause("ACC-02")
def test_an_mr_without_a_remote_right_refuses_every_remote_access():
    m = AccessModel(SIZE)
    m.reg_mr(1, 0, 0, 4096, LOCAL_WRITE | MW_BIND, 0)  # rkey 0: no remote key
    for key in (0, 0x100, 0x1FF):
        assert m.access(0, True, key, 0, 8, b"x" * 8).why == "key"
        m.reconnect(0)
    m.reg_mr(3, 0, 0, 4096, REMOTE_READ, 0x301)
    assert m.access(0, False, 0x301, 0, 8).ok
    assert m.access(0, True, 0x301, 0, 8, b"x" * 8).why == "rights"


@pytest.mark.clause("RREG-02")
def test_a_type_2_window_answers_only_on_the_qp_it_was_bound_on():
    m = owner()
    assert m.access(1, False, 0x8000107, 1024, 8).why == "qp"
    assert m.up[1] == [False, False] and m.up[0] == [True, True]
    assert m.access(0, False, 0x8000107, 1024, 8).ok
    m.reconnect(0)  # new QPs: the window stays bound to the old one
    assert m.access(0, False, 0x8000107, 1024, 8).why == "qp"


@pytest.mark.clause("RDEREG-02")
def test_a_local_invalidate_revokes_the_window_at_once():
    m = owner()
    assert m.invalidate(2, 0, 0x8000107).ok
    assert m.access(0, True, 0x8000107, 1024, 8, b"y" * 8).why == "key"
    assert m.mem[1024:1032] == bytes(8)


@pytest.mark.clause("RDEREG-02")
def test_deregistration_waits_for_its_windows_and_then_the_key_is_dead():
    m = owner()
    m.reg_mr(5, 0, 0, 4096, REMOTE_READ | MW_BIND, 0x505)
    assert not m.dereg_mr(1).ok  # window 2 is bound to it
    assert m.dereg_mr(5).ok
    assert m.access(0, False, 0x505, 0, 8).why == "key"


@pytest.mark.clause("RREG-02")
def test_an_object_of_another_protection_domain_is_refused():
    m = AccessModel(SIZE)
    m.reg_mr(1, 1, 0, 4096, REMOTE_READ, 0x101)  # PD 1: connection 2 only
    assert m.access(0, False, 0x101, 0, 8).why == "pd"
    assert m.access(2, False, 0x101, 0, 8).ok


@pytest.mark.clause("ACC-02")
def test_a_window_grants_only_its_own_rights():
    m = AccessModel(SIZE)
    m.reg_mr(1, 0, 0, 4096, MW_BIND | LOCAL_WRITE, 0)
    m.alloc_mw(2, 0, 0x8000200)
    assert m.bind(2, 1, 0, 0, 4096, REMOTE_READ, 0x01).ok
    assert m.access(0, False, 0x8000201, 0, 8).ok
    assert m.access(0, True, 0x8000201, 0, 8, b"z" * 8).why == "rights"


@pytest.mark.clause("RDMA-05")
def test_a_window_is_checked_against_its_own_range_unless_the_deviation_is_switched():
    inside, before, after = (1024, 8), (1023, 2), (2047, 2)  # one byte over either edge, inside the MR
    assert owner().access(0, False, 0x8000107, *inside).ok
    for at in (before, after):
        assert owner().access(0, False, 0x8000107, *at).why == "range"
        assert owner("window-range").access(0, False, 0x8000107, *at).ok
    assert owner("window-range").access(0, False, 0x8000107, 8191, 2).why == "range"  # the MR's end holds


@pytest.mark.clause("RDMA-05")
def test_a_zero_length_access_checks_nothing_and_moves_nothing():
    m = AccessModel(SIZE)
    before = bytes(m.mem)
    assert m.access(0, True, 0xDEAD00, 123456, 0).ok
    assert m.access(0, False, 0, -1, 0).ok and m.up[0] == [True, True]
    assert bytes(m.mem) == before


@pytest.mark.clause("CONN-01")
def test_a_refused_access_puts_both_ends_of_its_connection_in_error():
    m = owner()
    assert not m.access(0, True, 0x8000107, 4096, 8, b"w" * 8).ok
    assert m.up == [[False, False], [True, True], [True, True]]


@pytest.mark.clause("RREG-02")
@pytest.mark.parametrize("case, why", [
    ("no MW_BIND", "mr rights"), ("writable window, MR without LOCAL_WRITE", "mr rights"),
    ("one byte past the MR", "range"), ("empty", "range"), ("bound already", "window"),
    ("MR of the other PD", "pd"), ("QP of the other PD", "pd"),
])
def test_a_bind_outside_the_rules_fails_and_downs_the_owners_end(case, why):
    m = AccessModel(SIZE)
    m.reg_mr(1, 0, 0, 4096, MW_BIND | LOCAL_WRITE, 0)
    m.reg_mr(2, 0, 0, 4096, LOCAL_WRITE, 0)
    m.reg_mr(3, 0, 0, 4096, MW_BIND, 0)
    m.reg_mr(4, 1, 0, 4096, MW_BIND | LOCAL_WRITE, 0)
    m.alloc_mw(9, 0, 0x8000900)
    args = {"no MW_BIND": (2, 0, 0, 64, REMOTE_READ), "writable window, MR without LOCAL_WRITE": (3, 0, 0, 64, RW),
            "one byte past the MR": (1, 0, 4032, 65, RW), "empty": (1, 0, 0, 0, RW), "bound already": (1, 0, 0, 64, RW),
            "MR of the other PD": (4, 0, 0, 64, RW), "QP of the other PD": (1, 2, 0, 64, RW)}[case]
    if case == "bound already":
        assert m.bind(9, *args, 1).ok
    mr, conn, addr, length, access = args
    out = m.bind(9, mr, conn, addr, length, access, 2)
    assert (out.ok, out.why) == (False, why)
    assert m.up[conn] == [False, True]


@pytest.mark.clause("RREG-02")
def test_the_bind_pd_deviation_lets_a_window_over_another_pds_mr():
    m = AccessModel(SIZE, frozenset({"bind-mr-pd"}))
    m.reg_mr(1, 0, 0, 4096, MW_BIND | LOCAL_WRITE, 0)
    m.alloc_mw(2, 1, 0x8000200)
    assert m.bind(2, 1, 2, 0, 64, RW, 3).ok
    assert m.access(2, False, 0x8000203, 0, 8).ok  # PD 0's memory through connection 2 (PD 1)
