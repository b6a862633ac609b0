"""`sanspi lab` on the host: bad input is one line and exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sanspi.cli import main


def sanspi(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real entry point in a child process (argparse may sys.exit)."""
    return subprocess.run([sys.executable, "-m", "sanspi", *argv], capture_output=True,
                          text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("argv, words", [
    (["lab"], "required"),
    (["lab", "bogus"], "invalid choice"),
    (["lab", "run"], "no command"),
    (["lab", "run", "--"], "no command"),
    (["lab", "run", "--timeout", "soon", "--", "true"], "--timeout"),
    (["lab", "run", "--timeout", "-3", "--", "true"], "positive"),
    (["lab", "run", "--timeout", "nan", "--", "true"], "positive"),
    (["lab", "run", "--topology", "ring", "--", "true"], "unknown topology"),
    (["lab", "run", "--frobnicate"], "--frobnicate"),
    (["lab", "status", "extra"], "unrecognized"),
    (["lab", "peer-tests", "--timeout", "x"], "--timeout"),
])
def test_bad_input_is_one_line_exit_2(argv, words):
    res = sanspi(*argv)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert words in lines[0]
    assert "Traceback" not in res.stderr
    assert res.stdout == ""


def test_run_without_setup_says_to_run_setup(tmp_path, capsys, monkeypatch):
    """No stamp in the cache: one line naming `sanspi lab setup`, exit 1."""
    monkeypatch.setenv("SANSPI_CACHE", str(tmp_path))
    monkeypatch.setenv("SANSPI_LAB_NATIVE", "0")
    assert main(["lab", "run", "--", "true"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sanspi lab setup" in err[0], err


def test_status_reports_cache_and_kvm(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SANSPI_CACHE", str(tmp_path))
    monkeypatch.setenv("SANSPI_LAB_KVM", "1")
    assert main(["lab", "status"]) == 0
    out = capsys.readouterr().out
    assert f"cache:        {tmp_path / 'lab'}" in out
    assert "setup:        not done" in out
    assert "kvm:          on" in out


def test_kvm_is_off_unless_asked(monkeypatch):
    from argparse import Namespace

    from sanspi.lab.cli import use_kvm
    assert use_kvm(Namespace(kvm=False), {}) is False
    assert use_kvm(Namespace(kvm=False), {"SANSPI_LAB_KVM": "0"}) is False
    assert use_kvm(Namespace(kvm=False), {"SANSPI_LAB_KVM": "1"}) is True
    assert use_kvm(Namespace(kvm=True), {}) is True


def test_two_hosts_never_run_natively():
    from sanspi.lab.cli import want_native
    assert want_native("two-host", {}) is None
    assert want_native("loopback", {"SANSPI_LAB_NATIVE": "0"}) is None
