"""The lockstep campaign across the two lab guests (``sanspi lab run
--topology two-host``): host 0's VerbsProvider with the World, the model and
Hypothesis in guest 0; host 1's VerbsProvider in guest 1 behind the agent
(conform/agent.py), so every connection and every RDMA transfer of the
campaign crosses the guests' link. Guest 1's run of this test is the agent;
it passes when guest 0 says bye."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.rxe, pytest.mark.two_host]

#: Not the CLI's agent port, nor the other two-host tests' side channels.
AGENT_PORT = 18531
PAGES = 4


def test_lockstep_campaign_across_two_guests_finds_no_divergence(lab):
    from sanspi.conform import agent
    from sanspi.conform.campaign import model_config, run_campaign
    from sanspi.conform.providers import probe, rxe_two_host

    if lab.hosts != 2 or lab.peer_addr is None:
        pytest.fail("a two-host test needs `sanspi lab run --topology two-host` "
                    f"(this run: topology {lab.topology}, {lab.hosts} host)", pytrace=False)
    if lab.host == 1:
        assert agent.serve(lab.local_addr, AGENT_PORT) == 0
        return
    link = agent.connect(lab.peer_addr, AGENT_PORT)
    try:
        assert link.call("hello")["device"].startswith("rxe")
        factory = rxe_two_host(PAGES, link)
        probed = probe(factory)
        assert probed.name == "verbs"
        result = run_campaign(factory, model_config(probed.capabilities, pages=PAGES), examples=8, steps=30,
                              seed=2, use_database=False)
    finally:
        link.bye()
    assert link.lost is None, link.lost
    assert result.ok, f"{result.divergence}\n" + "\n".join(f"{s.name} {s.args} -> {s.status}" for s in result.trace)
    assert result.examples == 8 and result.steps > 100
    reached = {(name, result_) for (name, result_, _), n in result.coverage.outcomes.items() if n}
    # the hosts really met across the link and moved bytes over it
    assert ("connect", "0") in reached
    assert {("rdma_write", "0"), ("rdma_read", "0"), ("send", "0")} & reached, sorted(reached)
    assert any(k.startswith("moved: ") for k in result.coverage.behaviour), "no transfer changed a byte"
