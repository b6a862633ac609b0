"""The hostile peer on the software provider's fabric: it gets nothing from
the software provider, and it finds each hole a seeded-bug variant opens,
in the class aimed at that hole (conform/mutants.py)."""

from __future__ import annotations

import pytest

from sanspi.attack.campaign import CLASSES, CONTROL, PAGES, Attack
from sanspi.attack.cli import decoder
from sanspi.attack.host import PeerHost
from sanspi.attack.peer_sim import SimHostilePeer
from sanspi.cli import main
from sanspi.conform.mutants import BY_NAME, provider
from sanspi.impl.interface import Capabilities
from sanspi.impl.sim import SimNic, SimProvider, sim_pair


def pair_of(cls: type[SimProvider] = SimProvider):
    def make():
        victim, honest = sim_pair(Capabilities(), PAGES, cls=cls)
        return victim, PeerHost(honest, SimHostilePeer(honest))

    return make


def attack(factory, attempts: int, seed: int = 0):
    return Attack(factory, "sim", "loopback", decoder("sim"), attempts, seed, 600.0, observe_mrs=False).run()


@pytest.mark.clause("RREG-02", "RDEREG-02", "CACHE-03", "RDMA-05", "RDMA-08", "ACC-02", "CONN-01")
def test_the_software_provider_gives_a_hostile_peer_nothing():
    result = attack(pair_of(), 500)
    assert result.ok, result.findings[:3]
    assert result.attempts == 500 and result.successes == 0 and result.changed == 0
    for cls in CLASSES:  # every class was tried, and every attempt judged
        row = result.rows[cls]
        assert row.attempts > 0, cls
        assert row.refused + row.allowed + row.done == row.attempts, cls
    control = result.rows[CONTROL]  # the rig reaches the victim where the model allows it
    assert control.attempts > 0 and control.allowed == control.attempts
    assert result.checks >= result.attempts


@pytest.mark.parametrize("mutant, cls", [
    pytest.param("no-remote-permission-check", "rights", marks=pytest.mark.clause("ACC-02")),
    pytest.param("descriptor-on-any-connection", "foreign", marks=pytest.mark.clause("RREG-02")),
    pytest.param("descriptor-alive-after-dereg", "revoked", marks=pytest.mark.clause("RDEREG-02")),
])
def test_each_seeded_hole_is_found_by_the_class_aimed_at_it(mutant, cls):
    result = attack(pair_of(BY_NAME[mutant].cls), 300)
    assert not result.ok
    assert result.rows[cls].successes > 0, {c: r.successes for c, r in result.rows.items()}
    found = next(f for f in result.findings if f.kind == "success" and f.cls == cls)
    assert "(raw, key 0x" in found.message and "provider returned 0" in found.message and found.trace


@pytest.mark.clause("RDMA-06")
def test_a_byte_written_beyond_the_range_is_counted_as_changed():
    result = attack(pair_of(BY_NAME["write-one-byte-too-many"].cls), 200)
    assert result.changed > 0 and not result.ok
    assert any(f.kind == "changed bytes" and "the model says" in f.message for f in result.findings)


class ResponderKeepsGoing(SimNic):
    """A responder that refuses a request but keeps its queue pair up."""

    def respond(self, qpn, packet):
        qp = self.qps.get(qpn)
        was = qp.error if qp is not None else True
        reply = super().respond(qpn, packet)
        if not was:
            qp.error = False
        return reply


@pytest.mark.clause("CONN-01")
def test_a_victim_that_stays_up_after_a_refusal_fails_the_connection_check():
    result = attack(pair_of(provider(ResponderKeepsGoing)), 50)
    assert any(f.kind == "connection state" for f in result.findings), result.findings[:3]


class KeepsItsQueuePairs(SimProvider):
    def shutdown(self) -> None:
        self.sockets.clear()  # forgets them, the NIC keeps them


@pytest.mark.clause("SOCK-02")
def test_resources_left_after_shutdown_fail_the_run():
    result = attack(pair_of(KeepsItsQueuePairs), 20)
    leak = next(f for f in result.findings if f.kind == "leak")
    assert "qp 0 -> " in leak.message


@pytest.mark.clause("RREG-02", "RDEREG-02")
def test_the_command_reports_per_class_and_states_the_totals_last(tmp_path, capsys):
    assert main(["attack", "--provider", "sim", "--attempts", "60", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "attack.md").read_text().splitlines()
    assert md[-1] == "Total: 60 attempts, 0 successes, 0 with changed bytes"
    assert any(line.startswith("| keys |") for line in md)
    assert '"successes": 0' in (tmp_path / "attack.json").read_text()
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == md[-1]


@pytest.mark.clause("RDEREG-02")
def test_the_command_exits_1_on_a_success(tmp_path, monkeypatch, capsys):
    import sanspi.attack.cli as cli

    monkeypatch.setattr(cli, "_factory", lambda name: pair_of(BY_NAME["descriptor-alive-after-dereg"].cls))
    assert main(["attack", "--provider", "sim", "--attempts", "150", "--out", str(tmp_path)]) == 1
    assert "successes" in capsys.readouterr().out


class PeerTimesOut(SimHostilePeer):
    """The hostile peer's completion never comes after its 30th post, as on
    the two-host link at attempt 3,229 of the long run with seed 0 (README)."""

    posts = 0

    def post(self, *args, **kwargs):
        PeerTimesOut.posts += 1
        if PeerTimesOut.posts > 30:
            raise TimeoutError("no completion within 10.0 s")
        return super().post(*args, **kwargs)


@pytest.mark.clause("RREG-02", "RDEREG-02")
def test_a_lab_timeout_stops_the_run_with_its_report_and_exit_1(tmp_path, monkeypatch, capsys):
    import sanspi.attack.cli as cli

    def make():
        victim, honest = sim_pair(Capabilities(), PAGES)
        return victim, PeerHost(honest, PeerTimesOut(honest))

    PeerTimesOut.posts = 0
    monkeypatch.setattr(cli, "_factory", lambda name: make)
    assert main(["attack", "--provider", "sim", "--attempts", "200", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "the run stopped: a lab failure after" in err and "no completion within 10.0 s" in err
    assert "Traceback" not in err
    md = (tmp_path / "attack.md").read_text()
    assert "a lab failure after" in md and md.splitlines()[-1].startswith("Total: ")


def exit_status(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors
        return exc.code


@pytest.mark.clause("RREG-02", "RDEREG-02")
@pytest.mark.parametrize("profile", ["ci", "long"])
def test_the_lab_run_outlasts_the_attacks_own_time_limit(profile, tmp_path, monkeypatch):
    """Through the lab, the guest's deadline is the run's own limit plus a margin for boot and report: the
    lab's default (1800 s) once cut a 10,000-attempt run off before it could stop by itself and report."""
    from sanspi.attack import cli as attack_cli
    from sanspi import cli as sanspi_cli

    asked: list[list[str]] = []
    real_main = sanspi_cli.main
    monkeypatch.setattr(sanspi_cli, "main", lambda argv: asked.append(argv) or 0 if argv[:2] == ["lab", "run"]
                        else real_main(argv))
    import argparse

    args = argparse.Namespace(topology="loopback", out=str(tmp_path), provider="rxe", profile=profile, seed=0)
    assert attack_cli._through_lab(args, 10) == 0
    (argv,) = asked
    deadline = float(argv[argv.index("--timeout") + 1])
    assert deadline >= attack_cli.TIME_LIMIT_S[profile] + 300
    assert argv.index("--timeout") < argv.index("--")


@pytest.mark.clause("RREG-02")
@pytest.mark.parametrize("argv", [
    ["--attempts", "0"], ["--topology", "two-host"], ["--provider", "nope"], ["--seed", "x"],
])
def test_bad_input_is_one_line_and_exit_2(argv, capsys):
    assert exit_status(["attack", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sanspi"), err
