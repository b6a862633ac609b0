"""The launcher with stand-in processes: output, statuses, deadlines."""

from __future__ import annotations

import io
import os
import time

import pytest

from sanspi.lab import launch
from sanspi.lab.topology import ERROR_TAG, LAB_FAILURE, READY_TAG


def sh(script: str) -> list[str]:
    return ["bash", "-c", script]


def run(argvs, *, boot_timeout=30.0, timeout=30.0):
    out, err = io.StringIO(), io.StringIO()
    names = [f"h{i}" for i in range(len(argvs))]
    outcomes = launch.run_processes(argvs, names, env=dict(os.environ), boot_timeout=boot_timeout,
                                    timeout=timeout, stdout=out, stderr=err, log=lambda m: None)
    return outcomes, out.getvalue(), err.getvalue()


def test_output_and_status_come_back():
    ready = f"echo '{READY_TAG}6.1.0-56-amd64, device rxe0 (netdev d0)' >&2"
    outcomes, out, err = run([sh(f"{ready}; echo hello; exit 3")])
    assert out == "hello\n"
    assert outcomes[0].status == 3
    assert outcomes[0].ready_line.startswith(READY_TAG + "6.1.0-56-amd64")
    assert launch.summarize(outcomes) == (3, [])


def test_two_hosts_are_prefixed_and_either_failure_fails():
    ready = f"echo '{READY_TAG}k, device rxe0' >&2"
    outcomes, out, _ = run([sh(f"{ready}; echo a"), sh(f"{ready}; echo b; exit 1")])
    assert sorted(out.splitlines()) == ["h0| a", "h1| b"]
    assert [o.status for o in outcomes] == [0, 1]
    assert launch.summarize(outcomes)[0] == 1


def test_a_guest_that_never_boots_is_stopped():
    started = time.monotonic()
    with pytest.raises(launch.LabTimeout, match="did not boot within 1 s"):
        run([sh("sleep 60")], boot_timeout=1.0)
    assert time.monotonic() - started < 20


def test_a_run_past_its_timeout_is_stopped():
    ready = f"echo '{READY_TAG}k' >&2"
    with pytest.raises(launch.LabTimeout, match="within 2 s"):
        run([sh(f"{ready}; sleep 60")], timeout=2.0)


def test_lab_errors_are_explained():
    outcomes, _, _ = run([sh(f"echo '{ERROR_TAG}no rxe' >&2; exit {LAB_FAILURE}")])
    status, problems = launch.summarize(outcomes)
    assert status == LAB_FAILURE
    assert problems == ["h0: no rxe"]


def test_free_ports_are_distinct():
    a, b = launch.free_udp_ports(2)
    assert a != b and a > 0 and b > 0
