"""The hostile peer on rxe, in the loopback guest: its key class finds an
RDMA registration whose MR carries remote rights of its own (the verbs
provider as it was before issue 14, rebuilt here: the hole), and a zero-byte request runs
without any key check (IBA C9-88) and touches nothing. Zero successes
against the verbs provider itself is what `make test`'s `sanspi attack`
legs check, in one guest and across two."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.rxe


@pytest.mark.clause("RREG-02", "RDEREG-02", "ACC-02", "RDMA-05")
def test_the_hostile_peer_reaches_an_mr_that_has_remote_rights_by_its_key(lab):
    from sanspi.attack.campaign import PAGES, Attack
    from sanspi.attack.cli import decoder
    from sanspi.attack.host import PeerHost
    from sanspi.attack.peer_verbs import VerbsHostilePeer
    from sanspi.conform.verbs_mutants import component, provider
    from sanspi.impl.verbs_device import Device

    def reg_mr_with_remote_rights(self, addr, length, access):
        """The verbs provider before issue 14: an RDMA registration's MR
        (the one asked with MW_BIND) also carries both remote rights."""
        import pyverbs.enums as e

        if access & e.IBV_ACCESS_MW_BIND:
            access |= e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_READ | e.IBV_ACCESS_REMOTE_WRITE
        return Device.reg_mr(self, addr, length, access)

    open_mrs = provider("MrsWithRemoteRights", Device=component(Device, reg_mr=reg_mr_with_remote_rights))

    def pair():
        honest = open_mrs(pages=PAGES)
        return open_mrs(pages=PAGES), PeerHost(honest, VerbsHostilePeer(honest))

    result = Attack(pair, "rxe", "loopback", decoder("rxe"), 40, 0, 900.0, observe_mrs=True).run()
    assert result.rows["keys"].successes > 0, result.findings[:3]
    hit = next(f for f in result.findings if f.kind == "success" and f.cls == "keys")
    assert " MR of registration " in hit.what and "provider returned 0" in hit.message, hit
    empty = result.rows["empty"]  # C9-88: done, whatever the key, and no byte changed
    assert empty.attempts > 0 and empty.done == empty.attempts and empty.changed == 0
