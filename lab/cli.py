"""``sanspi lab``: set up, run in, and inspect the rxe lab.

    sanspi lab setup                      Debian packages + guest kernel (idempotent)
    sanspi lab run [--topology T] -- CMD  CMD with rxe: in a guest, or natively
    sanspi lab shell                      an interactive loopback guest
    sanspi lab status                     what is installed and how runs will go
    sanspi lab peer-tests [--record]      rdma-core's own pyverbs tests on rxe

Environment: ``SANSPI_CACHE`` (sanspi's cache folder, default ~/.cache/sanspi;
the lab keeps its kernel and packages in its lab/ folder),
``SANSPI_LAB_KVM=1`` (use /dev/kvm; off by default because the Debian kernel
hangs under KVM on these machines), ``SANSPI_LAB_BOOT_TIMEOUT`` (seconds,
default 300), ``SANSPI_LAB_NATIVE=0`` (always use a guest).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import time
from pathlib import Path
from typing import IO, NoReturn, Sequence

from sanspi.cli import UsageError
from sanspi.lab import launch, peer, topology
from sanspi.lab.provision import (LabError, Provisioner, cache_dir, native_rdma,
                                  read_stamp, require_stamp)

DEFAULT_TIMEOUT = 1800.0
DEFAULT_BOOT_TIMEOUT = 300.0


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _one_line_errors(parser: argparse.ArgumentParser) -> None:
    """argparse prints a usage block before its error; the project's rule is
    one line for bad input, exit status 2."""
    def error(message: str) -> NoReturn:
        print(f"{parser.prog}: {message}", file=sys.stderr)
        sys.exit(2)

    # Leftover arguments would travel up to the top-level parser, whose
    # error prints the usage block too; refuse them here, in one line.
    parse_known = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):  # type: ignore[no-untyped-def]
        ns, extras = parse_known(args, namespace)
        if extras:
            error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, extras

    parser.error = error  # type: ignore[method-assign]
    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]


def register(subparsers: argparse._SubParsersAction) -> None:
    lab = subparsers.add_parser("lab", help="the rxe lab: a QEMU guest with Soft-RoCE",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    _one_line_errors(lab)
    sub = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND")
    sub.required = True

    p = sub.add_parser("setup", help="install the Debian packages and fetch the guest kernel")
    p.add_argument("--refresh", action="store_true",
                   help="ask apt again for the current kernel (the stamp otherwise keeps it)")
    p.set_defaults(run=cmd_setup)
    _one_line_errors(p)

    p = sub.add_parser(
        "run", help="run CMD where rxe works; its output and status come back",
        description="Boot the guest(s), load rdma_rxe, build the topology, run CMD "
                    "in the repo with the venv's bin first on PATH. CMD sees "
                    "SANSPI_LAB_TOPOLOGY, SANSPI_LAB_HOST (0 or 1), SANSPI_LAB_HOSTS, "
                    "SANSPI_LAB_KERNEL, SANSPI_LAB_DEVICE (rxe0), SANSPI_LAB_GID, "
                    "SANSPI_LAB_LOCAL_ADDR and SANSPI_LAB_PEER_ADDR. two-host runs "
                    "CMD in both guests (output prefixed h0|/h1|); the exit status "
                    "is the first non-zero one.")
    p.add_argument("--topology", default="loopback", metavar="|".join(topology.TOPOLOGIES),
                   help="loopback: one host, one rxe device; two-host: two guests (default loopback)")
    p.add_argument("--timeout", default=str(DEFAULT_TIMEOUT), metavar="S",
                   help=f"stop everything after S seconds (default {DEFAULT_TIMEOUT:.0f})")
    p.add_argument("--kvm", action="store_true", help="use KVM (same as SANSPI_LAB_KVM=1)")
    p.add_argument("--rwdir", metavar="DIR", action="append", default=[],
                   help="a host folder the guest may write (created if missing; repeat for more); "
                   "the rest of the host's filesystem is read-only there")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    p.set_defaults(run=cmd_run)
    _one_line_errors(p)

    p = sub.add_parser("shell", help="an interactive shell in a loopback guest with rxe0")
    p.add_argument("--kvm", action="store_true", help="use KVM (same as SANSPI_LAB_KVM=1)")
    p.set_defaults(run=cmd_shell)
    _one_line_errors(p)

    p = sub.add_parser("status", help="what is installed, where, and how runs will go")
    p.set_defaults(run=cmd_status)
    _one_line_errors(p)

    p = sub.add_parser("peer-tests", help="rdma-core's own pyverbs test suite on rxe")
    p.add_argument("--timeout", default="3600", metavar="S",
                   help="stop after S seconds (default 3600)")
    p.add_argument("--record", action="store_true",
                   help=f"write the result into README.md, section \"{peer.README_TITLE}\"")
    p.add_argument("--kvm", action="store_true", help="use KVM (same as SANSPI_LAB_KVM=1)")
    p.set_defaults(run=cmd_peer_tests)
    _one_line_errors(p)


# -- helpers -----------------------------------------------------------------
def seconds(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{what} must be a number of seconds, not {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise UsageError(f"{what} must be a positive number of seconds, not {text!r}")
    return value


def command_of(remainder: list[str]) -> list[str]:
    """CMD after ``--`` (argparse keeps the ``--`` in a REMAINDER)."""
    cmd = list(remainder)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise UsageError("no command: sanspi lab run [--topology T] [--timeout S] -- CMD ...")
    if cmd[0].startswith("-"):
        raise UsageError(f"unknown option {cmd[0]!r} (put CMD after `--`)")
    return cmd


def use_kvm(args: argparse.Namespace, env: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    return bool(getattr(args, "kvm", False)) or env.get("SANSPI_LAB_KVM", "") == "1"


def venv_bin() -> Path:
    """The bin/ of the Python running sanspi: vng runs ``virtme-run`` by
    name, and CMD finds ``python`` and ``sanspi`` there."""
    return Path(sys.prefix) / "bin"


def repo_root() -> Path:
    """The checkout this lab/ lives in (editable install), else the cwd."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def boot_timeout(env: dict[str, str] | os._Environ[str] = os.environ) -> float:
    return seconds(env.get("SANSPI_LAB_BOOT_TIMEOUT", str(DEFAULT_BOOT_TIMEOUT)),
                   "SANSPI_LAB_BOOT_TIMEOUT")


def want_native(topo: str, env: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """The host's own RDMA, when it can stand in for a loopback guest.
    Two hosts always need two guests: rxe does not work across namespaces."""
    if topo != "loopback" or env.get("SANSPI_LAB_NATIVE", "") == "0":
        return None
    return native_rdma()


class Tee:
    """A sink that relays lines and keeps a copy (peer-tests parses it)."""

    def __init__(self, sink: IO[str]) -> None:
        self.sink, self.parts = sink, []  # type: ignore[var-annotated]

    def write(self, text: str) -> int:
        self.parts.append(text)
        return self.sink.write(text)

    def flush(self) -> None:
        self.sink.flush()

    def text(self) -> str:
        return "".join(self.parts)


def execute(topo: str, cmd: list[str], *, kvm: bool, timeout: float,
            stdout: IO[str] = sys.stdout, stderr: IO[str] = sys.stderr,
            interactive: bool = False, rwdirs: Sequence[Path] = ()) -> tuple[int, list[launch.Outcome]]:
    """Run ``cmd`` in ``topo``: natively when the host can, else in guests."""
    if topo not in topology.TOPOLOGIES:
        raise UsageError(f"unknown topology {topo!r} (choose from {', '.join(topology.TOPOLOGIES)})")
    cache = cache_dir()
    vbin = venv_bin()
    repo = repo_root()
    env = dict(os.environ, PATH=f"{vbin}{os.pathsep}{os.environ.get('PATH', '')}")
    scripts_dir = cache / "run"
    native = want_native(topo)
    if native:
        role = topology.roles(topo)[0]
        [path] = launch.write_scripts(scripts_dir, [topology.guest_script(
            role, cmd, repo=repo, venv_bin=vbin, native=True)])
        argvs, names = [["bash", str(path)]], ["host"]
        paths = [path]
        _log(f"lab: host kernel has RDMA ({native}): running without a guest")
    else:
        stamp = require_stamp(cache)
        if shutil.which("vng", path=str(vbin)) is None or shutil.which("virtme-run", path=str(vbin)) is None:
            raise LabError(f"virtme-ng (vng) is not in {vbin}: run `make venv` "
                           f"(pip install -e '.[lab]')")
        n = 2 if topo == "two-host" else 1
        paths = launch.script_slots(scripts_dir, n)
        ports = launch.free_udp_ports(2) if topo == "two-host" else (0, 0)
        for folder in rwdirs:
            folder.mkdir(parents=True, exist_ok=True)
        guests = topology.plan(topo, cmd, vmlinuz=stamp.vmlinuz, repo=repo, venv_bin=vbin,
                               kvm=kvm, script_paths=[str(p) for p in paths],
                               ports=(ports[0], ports[1]), rwdirs=rwdirs)
        for g, p in zip(guests, paths):
            p.write_text(g.script)
        argvs = [g.argv for g in guests]
        names = [f"h{g.role.host}" for g in guests]
        _log(f"lab: booting {n} guest{'s' if n > 1 else ''} ({topo}): kernel {stamp.kernel}, "
             f"{'KVM' if kvm else 'TCG, no KVM'}, 1 vCPU each")
    started = time.monotonic()
    try:
        outcomes = launch.run_processes(
            argvs, names, env=env, boot_timeout=float("inf") if interactive else boot_timeout(),
            timeout=timeout, stdout=stdout, stderr=stderr, log=_log, interactive=interactive)
    except launch.LabTimeout as exc:
        hint = ""
        if kvm and not native and "did not boot" in str(exc):
            hint = ("; KVM was on, and the Debian kernel hangs under KVM on these "
                    "machines: retry without --kvm / SANSPI_LAB_KVM=1")
        raise LabError(f"{exc}{hint}") from None
    finally:
        for p in paths:
            p.unlink(missing_ok=True)
    status, problems = launch.summarize(outcomes)
    if interactive:
        # The shell's output is not watched, so there is no "lab: kernel"
        # line to judge the boot by; its status is the shell's own.
        problems = []
    for o in outcomes:
        if o.booted_after is not None:
            _log(f"lab: {o.name} up after {o.booted_after:.1f} s")
    for line in problems:
        _log(f"sanspi lab: {line}")
    _log("lab: done in {:.1f} s: {}".format(
        time.monotonic() - started,
        ", ".join(f"{o.name} exit {o.status}" for o in outcomes)))
    if problems and status == 0:
        status = 1
    return status, outcomes


def _guarded(fn):
    """LabError is an expected failure: one line, exit status 1."""
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except LabError as exc:
            print(f"sanspi lab {args.lab_command}: {exc}", file=sys.stderr)
            return 1
    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


# -- subcommands -------------------------------------------------------------
@_guarded
def cmd_setup(args: argparse.Namespace) -> int:
    Provisioner(cache_dir()).ensure(refresh=args.refresh)
    if shutil.which("vng", path=str(venv_bin())) is None:
        raise LabError(f"virtme-ng (vng) is not in {venv_bin()}: run `make venv`")
    return 0


@_guarded
def cmd_run(args: argparse.Namespace) -> int:
    cmd = command_of(args.cmd)
    timeout = seconds(args.timeout, "--timeout")
    if args.topology not in topology.TOPOLOGIES:
        raise UsageError(f"unknown topology {args.topology!r} "
                         f"(choose from {', '.join(topology.TOPOLOGIES)})")
    status, _ = execute(args.topology, cmd, kvm=use_kvm(args), timeout=timeout,
                        rwdirs=[Path(d).resolve() for d in args.rwdir])
    return status


@_guarded
def cmd_shell(args: argparse.Namespace) -> int:
    if not sys.stdin.isatty():
        _log("lab: stdin is not a terminal; the shell reads commands from it")
    status, _ = execute("loopback", ["bash", "-i"], kvm=use_kvm(args),
                        timeout=float(10**9), interactive=True)
    return status


@_guarded
def cmd_status(args: argparse.Namespace) -> int:
    cache = cache_dir()
    prov = Provisioner(cache, log=lambda m: None)
    stamp = read_stamp(cache)
    missing = prov.missing_packages()
    vng = shutil.which("vng", path=str(venv_bin()))
    native = native_rdma()
    kvm = use_kvm(args)
    suites = sorted((cache / "rdma-core-tests").glob("*/tests/run_tests.py"))
    print(f"cache:        {cache}")
    if stamp is not None and stamp.usable():
        print(f"setup:        done; kernel {stamp.kernel} ({stamp.vmlinuz})")
    else:
        print("setup:        not done (run `sanspi lab setup` as root)")
    print("packages:     " + ("all installed" if not missing else "missing " + " ".join(missing)))
    print(f"virtme-ng:    {vng or 'missing (run `make venv`)'}")
    print(f"kvm:          {'on' if kvm else 'off (TCG; SANSPI_LAB_KVM=1 to use /dev/kvm)'}")
    print(f"host rdma:    {native + ': loopback runs natively' if native else 'none (' + os.uname().release + '): runs boot a guest'}")
    print(f"peer tests:   {suites[-1].parent if suites else 'not fetched (sanspi lab peer-tests fetches them)'}")
    return 0


@_guarded
def cmd_peer_tests(args: argparse.Namespace) -> int:
    timeout = seconds(args.timeout, "--timeout")
    prov = Provisioner(cache_dir())
    stamp = prov.ensure()
    tests = peer.ensure_suite(prov)
    version = prov.package_version(peer.PACKAGE) or "?"
    tee_out, tee_err = Tee(sys.stdout), Tee(sys.stderr)
    started = time.monotonic()
    _, outcomes = execute("loopback", peer.suite_command(tests), kvm=use_kvm(args),
                          timeout=timeout, stdout=tee_out, stderr=tee_err)
    wall = time.monotonic() - started
    res = peer.parse_unittest(tee_err.text() + "\n" + tee_out.text())
    device = "rxe0"
    ready = outcomes[0].ready_line or ""
    if ", device " in ready:
        device = ready.split(", device ", 1)[1].split()[0]
    kernel = ready[len(topology.READY_TAG):].split(",", 1)[0] if ready else stamp.kernel
    print(f"peer-tests: rdma-core {version} on {device}, kernel {kernel}: {res.counts()}"
          + ("" if res.finished else " (did not finish)"))
    for entry in res.failed:
        print(f"peer-tests:   {entry}")
    if args.record:
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
        section = peer.readme_section(res, kernel=kernel, version=version, device=device,
                                      wall=wall, when=when)
        peer.record_in_readme(repo_root() / "README.md", section)
        _log(f"lab: recorded in {repo_root() / 'README.md'}")
    if not res.finished:
        return 1
    return 1 if (res.failures or res.errors) else 0
