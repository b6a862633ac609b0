"""What runs where: the guest scripts and ``vng`` command lines of a lab run.

Everything here is a pure function of its arguments (no files, no processes),
so the host tests can check the command lines of both topologies without
booting anything. ``launch`` writes the scripts out and runs the commands.

Topologies (facts in lab/RXE-FACTS.md):

* ``loopback``: one guest, one rxe device bound to a ``dummy`` netdev with an
  address. Not ``lo``: on ``lo`` raw RC QPs connect but rdma_cm fails
  (``rdma_resolve_route: No such device``); on a dummy netdev both work, and
  two QPs on the one device still reach each other. Exactly one rxe device:
  a second one on a second local interface hangs.
* ``two-host``: two guests, each with one virtio NIC, joined by QEMU's UDP
  ``dgram`` netdev on the host's 127.0.0.1, one rxe device each. Two network
  namespaces on one kernel do not work (rxe's UDP socket lives only in the
  initial namespace), so the second host has to be a second kernel.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

TOPOLOGIES = ("loopback", "two-host")

DEVICE = "rxe0"
#: GID index of the IPv4-mapped address: index 0 is the MAC-derived
#: link-local GID, the netdev's IPv4 address comes next.
GID_INDEX = 1
LOOPBACK_NETDEV = "d0"
LOOPBACK_ADDR = "10.77.0.1"
#: The two guests' addresses on their private link (it exists only there).
TWO_HOST_ADDRS = ("10.78.0.1", "10.78.0.2")
#: The NIC is found by MAC inside the guest: its name depends on vng options.
TWO_HOST_MACS = ("52:54:00:5a:00:01", "52:54:00:5a:00:02")
#: Exit status of a guest script whose lab part (not CMD) failed; the line
#: before it on stderr starts with ERROR_TAG and says why.
LAB_FAILURE = 125
ERROR_TAG = "lab-error: "
#: First line of a lab run on stderr; its arrival also means "booted".
READY_TAG = "lab: kernel "


@dataclass(frozen=True)
class Role:
    """One host of a topology: its index, its addresses and its netdev."""

    topology: str
    host: int
    hosts: int
    local_addr: str
    peer_addr: str | None
    netdev: str | None  # None: find the NIC by ``mac`` inside the guest
    mac: str | None = None

    def env(self, kernel: str = "$(uname -r)") -> dict[str, str]:
        """The SANSPI_LAB_* variables CMD sees (tests and reports read them)."""
        env = {
            "SANSPI_LAB_TOPOLOGY": self.topology,
            "SANSPI_LAB_HOST": str(self.host),
            "SANSPI_LAB_HOSTS": str(self.hosts),
            "SANSPI_LAB_KERNEL": kernel,
            "SANSPI_LAB_DEVICE": DEVICE,
            "SANSPI_LAB_GID": str(GID_INDEX),
            "SANSPI_LAB_LOCAL_ADDR": self.local_addr,
        }
        if self.peer_addr is not None:
            env["SANSPI_LAB_PEER_ADDR"] = self.peer_addr
        return env


def roles(topology: str) -> list[Role]:
    """The hosts of a topology, host 0 first."""
    if topology == "loopback":
        return [Role("loopback", 0, 1, LOOPBACK_ADDR, LOOPBACK_ADDR, LOOPBACK_NETDEV)]
    if topology == "two-host":
        return [
            Role("two-host", i, 2, TWO_HOST_ADDRS[i], TWO_HOST_ADDRS[1 - i], None, TWO_HOST_MACS[i])
            for i in (0, 1)
        ]
    raise ValueError(f"unknown topology {topology!r} (choose from {', '.join(TOPOLOGIES)})")


def _fail(msg: str) -> str:
    return f"{{ echo {shlex.quote(ERROR_TAG + msg)} >&2; exit {LAB_FAILURE}; }}"


def guest_script(role: Role, cmd: list[str], *, repo: Path, venv_bin: Path,
                 native: bool = False, sysfs: str = "/sys") -> str:
    """The bash script one host runs: build its part of the topology, then CMD.

    ``native`` is the host's own kernel (it has rxe or a real device): an
    existing RDMA device is used as it is, and nothing is created if one is
    there, because the host's network is not ours to rearrange. ``sysfs``
    is where the script looks for devices (the host tests point it at a
    fake tree to run the script without a kernel).
    """
    if not cmd:
        raise ValueError("no command to run")
    ib = f"{sysfs}/class/infiniband"
    lines = ["set -u", "export LC_ALL=C", f"addr={role.local_addr}"]
    if native:
        lines += [
            f"existing=$(ls {ib} 2>/dev/null | head -n 1)",
            'if [ -n "$existing" ]; then',
            "dev=$existing",
            f'netdev=$(cat {ib}/$dev/ports/1/gid_attrs/ndevs/{GID_INDEX} 2>/dev/null || echo "?")',
            "addr=$(ip -4 -o addr show dev \"$netdev\" 2>/dev/null | "
            "awk '{sub(\"/.*\", \"\", $4); print $4; exit}')",
            "else",
        ]
    lines.append("modprobe rdma_rxe || " + _fail("modprobe rdma_rxe failed: this kernel has no rxe module"))
    if role.netdev is not None:
        nd = role.netdev
        lines += [
            f"netdev={nd}",
            f"ip link add {nd} type dummy || " + _fail(f"cannot create dummy netdev {nd}"),
        ]
    else:
        # The NIC QEMU added for the dgram link, found by the MAC we gave it.
        lines += [
            "netdev=",
            f"for n in {sysfs}/class/net/*; do "
            f'[ \"$(cat $n/address)\" = {role.mac} ] && netdev=${{n##*/}}; done',
            '[ -n "$netdev" ] || ' + _fail(f"no NIC with MAC {role.mac} in the guest"),
        ]
    lines += [
        'ip addr add "$addr/24" dev "$netdev" && ip link set "$netdev" up || '
        + _fail(f"cannot configure {role.local_addr} on the lab netdev"),
        f'rdma link add {DEVICE} type rxe netdev "$netdev" || '
        + _fail(f"rdma link add {DEVICE} failed"),
        f"dev={DEVICE}",
    ]
    if native:
        lines.append("fi")
    gid = f"{ib}/$dev/ports/1/gids/{GID_INDEX}"
    # The GID table and port state fill in shortly after `rdma link add`.
    lines += [
        "i=0; while [ $i -lt 100 ]; do "
        f"grep -q ACTIVE {ib}/$dev/ports/1/state 2>/dev/null && [ -e {gid} ] && "
        f"! grep -q '^0000:0000:0000:0000:0000:0000:0000:0000$' {gid} && "
        "break; i=$((i+1)); sleep 0.1; done",
        '[ $i -lt 100 ] || ' + _fail(
            "no active rxe device after setup (see `rdma link`; "
            "is rdma_rxe loaded and the netdev up?)"),
    ]
    env = role.env()
    env["SANSPI_LAB_DEVICE"] = "$dev"
    env["SANSPI_LAB_LOCAL_ADDR"] = "$addr"
    if role.topology == "loopback":
        env["SANSPI_LAB_PEER_ADDR"] = "$addr"
    for key, value in env.items():
        # Values are ours (no quotes inside); "$(...)"/"$dev" must expand.
        lines.append(f'export {key}="{value}"')
    lines.append(f"export PATH={shlex.quote(str(venv_bin))}:$PATH")
    if not native:
        # The guest sees the host's files read-only: Hypothesis keeps its
        # example database on the guest's own /tmp instead of warning.
        lines.append('export HYPOTHESIS_STORAGE_DIRECTORY="${HYPOTHESIS_STORAGE_DIRECTORY:-/tmp/hypothesis}"')
    if role.topology == "two-host":
        # The peer's link may come up a little later; wait for it (busybox
        # has ping, Debian's iputils may not be installed).
        lines.append(
            "i=0; while [ $i -lt 120 ] && ! busybox ping -c 1 -W 1 "
            f'"$SANSPI_LAB_PEER_ADDR" >/dev/null 2>&1; do i=$((i+1)); done'
        )
    lines.append(
        f'echo "{READY_TAG}$SANSPI_LAB_KERNEL, device $dev (netdev $netdev), '
        f'host $SANSPI_LAB_HOST of $SANSPI_LAB_HOSTS, addr $SANSPI_LAB_LOCAL_ADDR" >&2'
    )
    lines.append(f"cd {shlex.quote(str(repo))} || " + _fail(f"no repo at {repo}"))
    lines.append("exec " + shlex.join(cmd))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Guest:
    """One guest to boot: its role, its script, and the vng command line."""

    role: Role
    script: str
    argv: list[str] = field(default_factory=list)


def dgram_qemu_opts(local_port: int, remote_port: int, mac: str) -> str:
    """QEMU options for one end of the UDP link between two guests (lab/RXE-FACTS.md)."""
    return (
        "-netdev dgram,id=s0,"
        f"local.type=inet,local.host=127.0.0.1,local.port={local_port},"
        f"remote.type=inet,remote.host=127.0.0.1,remote.port={remote_port} "
        f"-device virtio-net-pci,netdev=s0,mac={mac}"
    )


def vng_argv(vmlinuz: Path, script_path: str, *, kvm: bool, name: str,
             qemu_opts: str | None = None, memory: str = "1G", rwdirs: Sequence[Path] = ()) -> list[str]:
    """The vng command that boots ``vmlinuz`` and runs one script as root.

    One vCPU: two vCPUs per guest doubled boot time under TCG (lab/RXE-FACTS.md).
    Without ``kvm`` QEMU emulates (TCG): under KVM the Debian kernel hangs
    after "Probing EDD" on these machines.
    """
    argv = ["vng", "--run", str(vmlinuz), "--user", "root", "--cpus", "1",
            "--memory", memory, "--name", name]
    if not kvm:
        argv.append("--disable-kvm")
    if qemu_opts:
        argv.append(f"--qemu-opts={qemu_opts}")
    # the host's filesystem is read-only in the guest: results go to these folders
    argv += [f"--rwdir={folder}" for folder in rwdirs]
    argv += ["--exec", f"bash {shlex.quote(script_path)}"]
    return argv


def plan(topology: str, cmd: list[str], *, vmlinuz: Path, repo: Path,
         venv_bin: Path, kvm: bool, script_paths: list[str],
         ports: tuple[int, int] = (0, 0), rwdirs: Sequence[Path] = ()) -> list[Guest]:
    """Every guest of one run. ``script_paths[i]`` is where guest i's script
    will be on the (shared) filesystem; ``ports`` are the two UDP ports of
    the two-host link on 127.0.0.1."""
    guests = []
    for role in roles(topology):
        script = guest_script(role, cmd, repo=repo, venv_bin=venv_bin)
        opts = None
        if topology == "two-host":
            opts = dgram_qemu_opts(ports[role.host], ports[1 - role.host], role.mac or "")
        argv = vng_argv(vmlinuz, script_paths[role.host], kvm=kvm,
                        name=f"sanspi-h{role.host}", qemu_opts=opts, rwdirs=rwdirs)
        guests.append(Guest(role, script, argv))
    return guests
