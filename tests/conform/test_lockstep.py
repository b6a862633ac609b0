"""The lockstep oracle on the software provider: no divergence, the report,
the replayable divergence test, and the pytest entry point for other
providers."""

from __future__ import annotations

import pytest

from sanspi.conform.campaign import model_config, run_campaign
from sanspi.conform.coverage import UNREACHABLE, uncovered
from sanspi.conform.world import Divergence, Ref, World
from sanspi.impl.interface import Capabilities
from sanspi.impl.sim import sim_pair
from sanspi.model.constants import MEM_READ, MEM_READWRITE, MEM_WRITE, OK, WSAECONNRESET, WSAEINVAL

CAPS = Capabilities()
CFG = model_config(CAPS, pages=4)


def world() -> World:
    w = World(sim_pair(CAPS, pages=4), CFG)
    for h in (0, 1):
        w.step("startup_ex", host=h, major=2, minor=2)
        w.step("alloc", host=h, page=0, npages=2)
    w.step("connect", conn=0)
    w.step("connect", conn=1)
    return w


@pytest.mark.clause("RDMA-06", "RDMA-07", "REG-05", "CACHE-02")
def test_directed_scenario_agrees():
    w = world()
    w.step("app_write", host=0, addr=0, length=200, seed=9)
    h = w.step("register_memory", host=0, sock=0, addr=0, length=4096, flags=MEM_READWRITE).result
    again = w.step("register_memory", host=0, sock=0, addr=0, length=4096, flags=MEM_READWRITE).result
    assert again == h
    d = w.step("register_rdma_memory", host=1, sock=0, addr=4096, length=512, flags=MEM_READWRITE,
               desc_len=CFG.descriptor_size).result
    step = w.step("rdma_write", host=0, sock=0, sges=((100, 0, Ref("issued", h)), (50, 150, Ref("issued", h))),
                  desc=Ref("issued", d), offset=3)
    assert (step.status, step.result) == (OK, 150)
    step = w.step("rdma_read", host=0, sock=0, sges=((20, 1000, Ref("issued", h)),), desc=Ref("issued", d), offset=0)
    assert step.status == OK
    # the provider's bytes equal the model's on both hosts (compared after every step)
    assert w.providers[1].memory.read(w.providers[1].memory.base + 4096 + 3, 100) == w.model.memory(1, 4099, 100)


@pytest.mark.clause("RDMA-08", "RDEREG-02")
def test_forged_and_revoked_descriptors_are_refused():
    w = world()
    h = w.step("register_memory", host=0, sock=0, addr=0, length=64, flags=MEM_READ).result
    d = w.step("register_rdma_memory", host=1, sock=0, addr=0, length=64, flags=MEM_WRITE,
               desc_len=CFG.descriptor_size).result
    forged = w.step("rdma_write", host=0, sock=0, sges=((8, 0, Ref("issued", h)),), desc=Ref("forged", d, at=20),
                    offset=0)
    assert forged.status in (WSAEINVAL, WSAECONNRESET)
    if forged.status == OK:  # pragma: no cover - the model never allows it
        pytest.fail("forged descriptor accepted")


def test_campaign_on_the_software_provider_finds_no_divergence():
    result = run_campaign(lambda: sim_pair(CAPS, pages=4), CFG, examples=40, steps=40, seed=1, use_database=False)
    assert result.ok, f"{result.divergence}\n" + "\n".join(str(s) for s in result.trace)
    assert result.steps > 500
    reached = {name for name, _, _ in result.coverage.outcomes}
    assert {"rdma_write", "rdma_read", "register_rdma_memory", "cache_callback"} <= reached


def test_campaign_reaches_every_target():
    """The bar: every (transition, result, reason) z3 proves possible and
    every behaviour class (bytes that really moved for each buffer count,
    each flag on each side, the integer edges, cache hits then used,
    descriptors forged at every byte) reached, or named in UNREACHABLE, at
    the ci budget with its top-up rounds."""
    from sanspi.conform.campaign import PROFILES, TOP_UP_ROUNDS, campaign_targets

    targets = campaign_targets(CFG)
    result = run_campaign(lambda: sim_pair(CAPS, pages=4), CFG, PROFILES["ci"]["examples"], PROFILES["ci"]["steps"],
                          seed=11, use_database=False, targets=targets, top_up=TOP_UP_ROUNDS)
    assert result.ok, result.divergence
    assert uncovered(result.coverage, targets, skip=UNREACHABLE) == []
    # the behaviour that status codes do not show, by name
    for n in range(1, CFG.max_sge + 1):
        assert result.coverage.behaviour[f"moved: rdma_write with {n} buffer(s) changed the destination's bytes"]


def test_top_up_rounds_run_only_while_targets_are_missing():
    from sanspi.conform.campaign import campaign_targets

    targets = campaign_targets(CFG)
    tiny = run_campaign(lambda: sim_pair(CAPS, pages=4), CFG, examples=2, steps=5, seed=1, use_database=False,
                        targets=targets, top_up=2)
    assert tiny.rounds == 3 and tiny.examples >= 4  # two examples of five steps reach little
    nothing_to_find = {"alloc -> 0"}  # reached by the set-up of every example
    done = run_campaign(lambda: sim_pair(CAPS, pages=4), CFG, examples=2, steps=5, seed=1, use_database=False,
                        targets=nothing_to_find, top_up=2)
    assert done.rounds == 1


def test_a_provider_that_raises_is_a_divergence():
    class Raising(type(sim_pair()[0])):
        def cache_callback(self, addr, size):
            raise RuntimeError("boom")

    from sanspi.impl.sim import SimFabric, SimMemory

    fabric = SimFabric()
    w = World(tuple(Raising(fabric, CAPS, SimMemory(4)) for _ in (0, 1)), CFG)
    w.step("startup_ex", host=0, major=2, minor=2)
    with pytest.raises(Divergence, match="raised RuntimeError: boom"):
        w.step("cache_callback", host=0, addr=0, size=10)


@pytest.mark.clause("SOCK-02", "CONN-02")
def test_a_connection_left_open_is_a_divergence_after_the_step():
    """After a close the World reads every connection's state (an RDMA write
    with no buffers): a provider that answers close but keeps the connection
    diverges there, before any transfer is tried."""
    from sanspi.impl.interface import Ret
    from sanspi.impl.sim import SimFabric, SimMemory, SimProvider

    class KeepsOpen(SimProvider):
        def close(self, s):
            return Ret(OK)

    fabric = SimFabric()
    w = World(tuple(KeepsOpen(fabric, CAPS, SimMemory(4)) for _ in (0, 1)), CFG)
    for h in (0, 1):
        w.step("startup_ex", host=h, major=2, minor=2)
    w.step("connect", conn=0)
    with pytest.raises(Divergence, match="connection 0: an RDMA write with no buffers gives WSAEINVAL"):
        w.step("close", conn=0)


def test_sanspi_conformance_fixture_accepts_the_software_provider(sanspi_conformance):
    result = sanspi_conformance(lambda: sim_pair(CAPS, pages=4), examples=10, steps=20, seed=3)
    assert result.ok and result.steps > 0


# --- what the World compares beyond status codes ------------------------------------


def _subclass(**methods):
    from sanspi.impl.sim import SimProvider

    return type("Broken", (SimProvider,), methods)


def _world_of(cls) -> World:
    from sanspi.impl.sim import SimFabric, SimMemory

    fabric = SimFabric()
    w = World(tuple(cls(fabric, CAPS, SimMemory(4, base=0x7F3A_0000_0000 + h * 2**32)) for h in (0, 1)), CFG)
    for h in (0, 1):
        w.step("startup_ex", host=h, major=2, minor=2)
        w.step("alloc", host=h, page=0, npages=2)
    w.step("connect", conn=0)
    return w


@pytest.mark.clause("START-01")
def test_a_missing_value_is_a_divergence():
    """Ret(0, None) where the SPI hands back a value: the World compares a
    value on every call that has one; None is not "nothing to compare"."""
    from sanspi.impl.interface import Ret
    from sanspi.impl.sim import SimFabric, SimMemory, SimProvider

    class NoVersion(SimProvider):
        def startup_ex(self, version, wsp_data=True, proc_table=True):
            ret = SimProvider.startup_ex(self, version, wsp_data, proc_table)
            return Ret(ret.status, None)

    fabric = SimFabric()
    w = World(tuple(NoVersion(fabric, CAPS, SimMemory(4)) for _ in (0, 1)), CFG)
    with pytest.raises(Divergence, match="handed back None, the model's value is 514"):
        w.step("startup_ex", host=0, major=2, minor=2)


@pytest.mark.clause("RDMA-06")
def test_a_write_reporting_no_byte_count_is_a_divergence():
    from sanspi.impl.interface import Ret
    from sanspi.impl.sim import SimProvider

    def rdma_write(self, s, buffers, target, offset):
        ret = SimProvider.rdma_write(self, s, buffers, target, offset)
        return Ret(ret.status, None)

    w = _world_of(_subclass(rdma_write=rdma_write))
    h = w.step("register_memory", host=0, sock=0, addr=0, length=64, flags=MEM_READ).result
    d = w.step("register_rdma_memory", host=1, sock=0, addr=0, length=64, flags=MEM_WRITE,
               desc_len=CFG.descriptor_size).result
    with pytest.raises(Divergence, match="handed back None, the model's value is 8"):
        w.step("rdma_write", host=0, sock=0, sges=((8, 0, Ref("issued", h)),), desc=Ref("issued", d), offset=0)


@pytest.mark.clause("REG-07")
def test_a_released_handle_issued_again_is_a_divergence():
    from sanspi.conform.mutants import HandlesReused

    w = _world_of(HandlesReused)
    h = w.step("register_memory", host=0, sock=0, addr=0, length=64, flags=MEM_READ).result
    w.step("deregister_memory", host=0, sock=0, handle=Ref("issued", h))
    assert w.step("cache_callback", host=0, addr=0, size=64).status == OK  # released: the handle is free
    with pytest.raises(Divergence, match="REG-07"):
        w.step("register_memory", host=0, sock=0, addr=128, length=64, flags=MEM_READ)


@pytest.mark.clause("DEREG-01", "DEREG-03")
def test_refusals_sharing_a_code_are_counted_by_their_clause():
    """WSAEINVAL from DEREG-01 (not live) and from DEREG-03 (a posted
    receive holds the buffer) are two outcomes, each to be reached."""
    w = _world_of(_subclass())
    h = w.step("register_memory", host=1, sock=0, addr=0, length=64, flags=MEM_WRITE).result
    w.step("post_recv", host=1, sock=0, length=16, addr=0, handle=Ref("issued", h))
    assert w.step("deregister_memory", host=1, sock=0, handle=Ref("issued", h)).status == WSAEINVAL
    assert w.step("deregister_memory", host=1, sock=0, handle=Ref("garbage", 1)).status == WSAEINVAL
    keys = {o for o in w.coverage.outcomes if o[0] == "deregister_memory"}
    assert {r for _, _, r in keys} == {"DEREG-03: a posted receive uses the buffer",
                                       "DEREG-01: not a live registration of this socket"}
    assert str(w.log[-2]).endswith("-> WSAEINVAL  [DEREG-03: a posted receive uses the buffer]")


@pytest.mark.clause("RDMA-06")
def test_moved_counts_only_transfers_that_changed_bytes():
    """A successful write of zeros onto zeros is not "bytes moved"; after
    the source is filled with a pattern, the same write is."""
    w = _world_of(_subclass())
    h = w.step("register_memory", host=0, sock=0, addr=0, length=64, flags=MEM_READ).result
    d = w.step("register_rdma_memory", host=1, sock=0, addr=0, length=64, flags=MEM_WRITE,
               desc_len=CFG.descriptor_size).result
    moved = "moved: rdma_write with 1 buffer(s) changed the destination's bytes"
    args = dict(host=0, sock=0, sges=((8, 0, Ref("issued", h)),), desc=Ref("issued", d), offset=0)
    assert w.step("rdma_write", **args).status == OK
    assert w.coverage.behaviour[moved] == 0
    w.step("app_write", host=0, addr=0, length=8, seed=3)
    assert w.step("rdma_write", **args).status == OK
    assert w.coverage.behaviour[moved] == 1


@pytest.mark.clause("RREG-02", "RDMA-08")
def test_descriptors_forged_at_a_byte_or_resized_are_refused_and_counted():
    w = _world_of(_subclass())
    h = w.step("register_memory", host=0, sock=0, addr=0, length=64, flags=MEM_READ).result
    d = w.step("register_rdma_memory", host=1, sock=0, addr=0, length=64, flags=MEM_WRITE,
               desc_len=CFG.descriptor_size).result
    for ref in (Ref("forged", d, at=31, mask=0xFF), Ref("resized", d, at=1), Ref("resized", d, at=-10**6)):
        step = w.step("rdma_write", host=0, sock=0, sges=((8, 0, Ref("issued", h)),), desc=ref, offset=0)
        assert step.status in (WSAEINVAL, WSAECONNRESET)
    assert {"descriptor: forged at byte 31, refused", "descriptor: one byte long, refused",
            "descriptor: empty, refused"} <= set(w.coverage.behaviour)


def test_a_divergence_is_shrunk_to_a_minimal_trace():
    """The report's trace is 1-minimal: deleting any one step loses the
    divergence (conform/shrink.py), and it comes with the times taken."""
    from sanspi.conform.mutants import BY_NAME
    from sanspi.conform.shrink import replay as replay_steps

    m = BY_NAME["gather-reversed"]
    factory = lambda: m.pair(CAPS, 4, 4096)  # noqa: E731
    result = run_campaign(factory, CFG, examples=200, steps=40, seed=0, use_database=False)
    assert not result.ok and result.minimal
    assert result.found_steps >= len(result.trace) and result.shrink_seconds > 0
    full = replay_steps(factory, CFG, list(result.trace))
    assert full.diverged
    for i in range(len(result.trace) - 1):
        assert not replay_steps(factory, CFG, list(result.trace[:i] + result.trace[i + 1:])).signature == \
            full.signature, f"step {i + 1} could go"


@pytest.mark.clause("REG-02", "RDMA-04", "RDMA-08", "RREG-03")
def test_arguments_outside_their_type_get_the_documented_codes():
    """The check behind spec/provider-interface.md's table: the software
    provider passes it, and a provider that takes 1.0 for MEM_READ fails it."""
    from sanspi.conform.argtypes import check_argument_types
    from sanspi.impl.sim import SimProvider, SimFabric, SimMemory

    made, wrong = check_argument_types(lambda: sim_pair(CAPS, pages=4))
    assert made > 100 and wrong == []

    class FloatFlags(SimProvider):
        def register_memory(self, s, buf, length, flags):
            return SimProvider.register_memory(self, s, buf, length, int(flags) if flags == flags else flags)

    def loose():
        fabric = SimFabric()
        return tuple(FloatFlags(fabric, CAPS, SimMemory(4)) for _ in (0, 1))

    _, wrong = check_argument_types(loose)
    assert any(w.startswith("register_memory(flags=1.0) gave 0") for w in wrong), wrong
