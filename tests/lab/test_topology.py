"""Command construction for the two topologies: pure functions, no boot."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from sanspi.lab import topology as t

VMLINUZ = Path("/cache/kernel/6.1.0-56-amd64/boot/vmlinuz-6.1.0-56-amd64")
REPO = Path("/work/main")
VBIN = Path("/work/main/.venv/bin")
CMD = ["python", "-m", "pytest", "-m", "rxe and not two_host", "it's"]


def plan(topology: str, *, kvm: bool = False, ports=(4001, 4002)):
    return t.plan(topology, CMD, vmlinuz=VMLINUZ, repo=REPO, venv_bin=VBIN, kvm=kvm,
                  script_paths=["/c/run/g0.sh", "/c/run/g1.sh"], ports=ports)


def opt(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_loopback_is_one_guest_on_a_dummy_netdev():
    [g] = plan("loopback")
    assert g.argv[:3] == ["vng", "--run", str(VMLINUZ)]
    assert "--disable-kvm" in g.argv
    assert opt(g.argv, "--cpus") == "1" and opt(g.argv, "--user") == "root"
    assert not any(a.startswith("--qemu-opts") for a in g.argv)
    assert opt(g.argv, "--exec") == "bash /c/run/g0.sh"
    assert "ip link add d0 type dummy" in g.script
    assert "rdma link add rxe0 type rxe netdev \"$netdev\"" in g.script
    assert "addr=10.77.0.1\n" in g.script
    assert 'export SANSPI_LAB_PEER_ADDR="$addr"' in g.script
    assert 'export SANSPI_LAB_HOST="0"' in g.script
    assert " lo " not in g.script, "rdma_cm fails on lo (lab/RXE-FACTS.md)"


def test_the_command_survives_quoting():
    [g] = plan("loopback")
    last = g.script.strip().splitlines()[-1]
    assert shlex.split(last) == ["exec", *CMD]
    assert f"cd {REPO}" in g.script
    assert f"export PATH={VBIN}:$PATH" in g.script


def test_two_host_is_two_guests_on_one_udp_link():
    g0, g1 = plan("two-host", ports=(4001, 4002))
    o0, o1 = (a.split("=", 1)[1] for g in (g0, g1) for a in g.argv if a.startswith("--qemu-opts="))
    assert "local.port=4001" in o0 and "remote.port=4002" in o0
    assert "local.port=4002" in o1 and "remote.port=4001" in o1
    assert "local.host=127.0.0.1" in o0 and "-netdev dgram" in o0
    mac0, mac1 = t.TWO_HOST_MACS
    assert f"mac={mac0}" in o0 and f"mac={mac1}" in o1 and mac0 != mac1
    assert opt(g0.argv, "--exec") == "bash /c/run/g0.sh"
    assert opt(g1.argv, "--exec") == "bash /c/run/g1.sh"
    assert opt(g0.argv, "--name") != opt(g1.argv, "--name")
    a0, a1 = t.TWO_HOST_ADDRS
    assert f"addr={a0}\n" in g0.script and f'SANSPI_LAB_PEER_ADDR="{a1}"' in g0.script
    assert f"addr={a1}\n" in g1.script and f'SANSPI_LAB_PEER_ADDR="{a0}"' in g1.script
    assert 'SANSPI_LAB_HOST="1"' in g1.script and 'SANSPI_LAB_HOSTS="2"' in g1.script
    assert "type dummy" not in g0.script, "two-host uses the NIC QEMU added"
    assert mac0 in g0.script and mac1 in g1.script


def test_kvm_only_when_asked():
    [g] = plan("loopback", kvm=True)
    assert "--disable-kvm" not in g.argv


def test_unknown_topology_and_empty_command_are_refused():
    with pytest.raises(ValueError, match="unknown topology"):
        t.roles("ring")
    with pytest.raises(ValueError, match="no command"):
        t.guest_script(t.roles("loopback")[0], [], repo=REPO, venv_bin=VBIN)


def test_scripts_are_valid_bash():
    for topo in t.TOPOLOGIES:
        for g in plan(topo):
            res = subprocess.run(["bash", "-n"], input=g.script, capture_output=True, text=True)
            assert res.returncode == 0, res.stderr
    native = t.guest_script(t.roles("loopback")[0], CMD, repo=REPO, venv_bin=VBIN, native=True)
    res = subprocess.run(["bash", "-n"], input=native, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def stubs(folder: Path, fail: str = "") -> str:
    """Stand-ins for the tools the script calls; ``fail`` names one that fails."""
    folder.mkdir(exist_ok=True)
    for tool in ("modprobe", "ip", "rdma", "busybox", "sleep"):
        (folder / tool).write_text(f"#!/bin/sh\nexit {1 if tool == fail else 0}\n")
        (folder / tool).chmod(0o755)
    return f"{folder}:/usr/bin:/bin"


def fake_sysfs(root: Path, *, state: str = "4: ACTIVE",
               gid: str = "0000:0000:0000:0000:0000:ffff:0a4d:0001") -> str:
    port = root / "class" / "infiniband" / "rxe0" / "ports" / "1"
    (port / "gids").mkdir(parents=True)
    (port / "state").write_text(state + "\n")
    (port / "gids" / "1").write_text(gid + "\n")
    return str(root)


def run_script(script: str, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                          env={"PATH": path}, timeout=60)


def test_the_script_exports_the_lab_and_runs_the_command(tmp_path):
    """With rxe up (a fake sysfs), the script announces the lab on stderr
    and CMD sees the SANSPI_LAB_* variables, in the repo folder."""
    sysfs = fake_sysfs(tmp_path / "sys")
    role = t.roles("loopback")[0]
    cmd = ["sh", "-c", "pwd; env | grep ^SANSPI_LAB_ | sort"]
    script = t.guest_script(role, cmd, repo=tmp_path, venv_bin=VBIN, sysfs=sysfs)
    res = run_script(script, stubs(tmp_path / "bin"))
    assert res.returncode == 0, res.stderr
    assert res.stderr.startswith(t.READY_TAG) and "device rxe0 (netdev d0)" in res.stderr
    out = res.stdout.splitlines()
    assert out[0] == str(tmp_path)
    assert "SANSPI_LAB_DEVICE=rxe0" in out and "SANSPI_LAB_GID=1" in out
    assert "SANSPI_LAB_LOCAL_ADDR=10.77.0.1" in out and "SANSPI_LAB_PEER_ADDR=10.77.0.1" in out
    assert any(line.startswith("SANSPI_LAB_KERNEL=") and len(line) > 18 for line in out)


def test_no_active_device_after_setup_is_one_clear_error(tmp_path):
    sysfs = fake_sysfs(tmp_path / "sys", state="1: DOWN")
    script = t.guest_script(t.roles("loopback")[0], ["echo", "ran"], repo=tmp_path,
                            venv_bin=VBIN, sysfs=sysfs)
    res = run_script(script, stubs(tmp_path / "bin"))
    assert res.returncode == t.LAB_FAILURE
    assert res.stderr.strip() == t.ERROR_TAG + (
        "no active rxe device after setup (see `rdma link`; is rdma_rxe loaded and the netdev up?)")
    assert res.stdout == ""


def test_a_failing_lab_step_reports_and_exits_lab_failure(tmp_path):
    """Run the loopback script with a `modprobe` that fails: the script
    stops before CMD with the lab-error line and status LAB_FAILURE."""
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "modprobe").write_text("#!/bin/sh\nexit 1\n")
    (stub / "modprobe").chmod(0o755)
    [g] = plan("loopback")
    res = subprocess.run(["bash", "-c", g.script], capture_output=True, text=True,
                         env={"PATH": f"{stub}:/usr/bin:/bin"})
    assert res.returncode == t.LAB_FAILURE
    assert res.stderr.startswith(t.ERROR_TAG + "modprobe rdma_rxe failed")
    assert res.stdout == ""


def test_rwdir_is_the_only_writable_host_folder():
    """Results reach the host only through --rwdir (the guest sees the host read-only)."""
    argv = t.vng_argv(VMLINUZ, "/tmp/s.sh", kvm=False, name="g", rwdirs=[Path("/work/out"), Path("/work/db")])
    assert "--rwdir=/work/out" in argv and argv.index("--rwdir=/work/out") < argv.index("--exec")
    assert "--rwdir=/work/db" in argv and argv.index("--rwdir=/work/db") < argv.index("--exec")
    assert not any(a.startswith("--rwdir") for a in t.vng_argv(VMLINUZ, "/tmp/s.sh", kvm=False, name="g"))
