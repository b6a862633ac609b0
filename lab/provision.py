"""``sanspi lab setup``: the Debian packages, the guest kernel and a stamp.

Only Debian's archive is used, through apt: the host's own kernel here has
no InfiniBand, so the guest boots Debian's stock kernel, extracted (not
installed) into the cache folder. A stamp records what was set up, so a
second ``setup`` checks in one ``dpkg-query`` call and does nothing more.

Every step that fails raises ``LabError`` with one line naming the package
or download and what to do; the CLI prints it without a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from sanspi.cache import cache_root

#: What the lab needs from Debian (lab/RXE-FACTS.md, "The lab itself"). virtme-ng comes
#: from PyPI through the venv's ``lab`` extra, not from here.
PACKAGES = (
    "qemu-system-x86",   # the guest machine (TCG)
    "busybox-static",    # virtme-ng's guest init uses it; `busybox ping`
    "kmod",              # modprobe in the guest, depmod for the kernel here
    "iproute2",          # `ip` and `rdma link add`
    "rdma-core",
    "ibverbs-providers",  # librxe, the userspace half of rxe
    "ibverbs-utils",     # ibv_devices / ibv_devinfo for diagnosis
    "python3-pyverbs",   # the only pyverbs that matches Debian's libibverbs
    "perftest",          # ib_write_bw and friends: the throughput yardstick
    "python3-venv",      # `make venv`
)
#: The metapackage whose dependency names the current kernel package.
KERNEL_META = "linux-image-amd64"
STAMP_NAME = "setup.stamp"
STAMP_SCHEMA = 1


class LabError(Exception):
    """A lab step failed; the message is one line and says what to do."""


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def default_runner(argv: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, cwd=cwd,
                              env=env, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: command not found")


def cache_dir(env: dict[str, str] | os._Environ[str] = os.environ) -> Path:
    """The lab's folder: ``lab/`` in sanspi's cache (``$SANSPI_CACHE``, by
    default ``~/.cache/sanspi``; sanspi/cache.py)."""
    return cache_root(env) / "lab"


def last_line(text: str) -> str:
    """The last non-empty line of a tool's output: usually its error."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


@dataclass(frozen=True)
class Stamp:
    """What a finished ``setup`` left in the cache."""

    schema: int
    kernel: str        # e.g. 6.1.0-56-amd64
    kernel_package: str  # e.g. linux-image-6.1.0-56-amd64
    root: str          # where the kernel .deb was extracted
    packages: tuple[str, ...]

    @property
    def vmlinuz(self) -> Path:
        return Path(self.root) / "boot" / f"vmlinuz-{self.kernel}"

    def usable(self) -> bool:
        """The stamp is current and what it names is still there."""
        return (self.schema == STAMP_SCHEMA and self.vmlinuz.is_file()
                and (Path(self.root) / "lib" / "modules" / self.kernel / "modules.dep").is_file()
                and set(PACKAGES) <= set(self.packages))


def read_stamp(cache: Path) -> Stamp | None:
    try:
        data = json.loads((cache / STAMP_NAME).read_text())
        data["packages"] = tuple(data["packages"])
        return Stamp(**data)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def write_stamp(cache: Path, stamp: Stamp) -> None:
    tmp = cache / (STAMP_NAME + ".tmp")
    tmp.write_text(json.dumps(asdict(stamp), indent=1) + "\n")
    tmp.replace(cache / STAMP_NAME)


def kernel_package_from_depends(text: str) -> str | None:
    """The first ``Depends: linux-image-...`` in ``apt-cache depends`` output."""
    for line in text.splitlines():
        key, _, value = line.strip().partition(":")
        value = value.strip()
        if key in ("Depends", "|Depends") and value.startswith("linux-image-"):
            return value
    return None


class Provisioner:
    """The setup steps, each checked before it is done.

    ``run`` executes a command and is the only way out to the system, so the
    host tests can drive this class with a fake and count what it did.
    """

    def __init__(self, cache: Path, run: Runner = default_runner,
                 log: Callable[[str], None] | None = None,
                 is_root: bool | None = None) -> None:
        self.cache = cache
        self.run = run
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.is_root = (os.geteuid() == 0) if is_root is None else is_root
        self._updated = False

    # -- checks -----------------------------------------------------------
    def missing_packages(self, packages: Sequence[str] = PACKAGES) -> list[str]:
        res = self.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\n", *packages])
        installed = set()
        for line in res.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[1].startswith("ii"):
                installed.add(parts[0])
        return [p for p in packages if p not in installed]

    def package_version(self, package: str) -> str | None:
        res = self.run(["dpkg-query", "-W", "-f=${Version}", package])
        return res.stdout.strip() or None if res.returncode == 0 else None

    # -- steps ------------------------------------------------------------
    def apt_get(self, *args: str, what: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        argv = ["apt-get", "-q", "-y"]
        if self.is_root:
            # apt's sandbox user (_apt) cannot write into root's cache.
            argv += ["-o", "APT::Sandbox::User=root"]
        argv += list(args)
        res = self.run(argv, cwd) if cwd is not None else self.run(argv)
        if res.returncode != 0:
            raise LabError(f"{what} failed: {last_line(res.stderr or res.stdout)}")
        return res

    def apt_update(self) -> None:
        if self._updated:
            return
        self.log("lab: apt-get update")
        self.apt_get("update", what="apt-get update (check the network and /etc/apt/sources.list*)")
        self._updated = True

    def install_packages(self) -> list[str]:
        missing = self.missing_packages()
        if not missing:
            return []
        if not self.is_root:
            raise LabError(f"Debian packages missing: {' '.join(missing)}; "
                           f"run `sanspi lab setup` as root, or apt-get install them")
        self.apt_update()
        self.log(f"lab: apt-get install {' '.join(missing)}")
        self.apt_get("install", *missing,
                  what=f"apt-get install {' '.join(missing)} (check `apt-cache policy "
                       f"{missing[0]}`)")
        still = self.missing_packages()
        if still:
            raise LabError(f"packages still not installed after apt-get install: {' '.join(still)}")
        return missing

    def resolve_kernel(self) -> str:
        res = self.run(["apt-cache", "depends", KERNEL_META])
        pkg = kernel_package_from_depends(res.stdout)
        if pkg is None and not self._updated and self.is_root:
            self.apt_update()
            res = self.run(["apt-cache", "depends", KERNEL_META])
            pkg = kernel_package_from_depends(res.stdout)
        if pkg is None:
            raise LabError(f"`apt-cache depends {KERNEL_META}` names no kernel package; "
                           f"run apt-get update (as root) and retry")
        return pkg

    def fetch_kernel(self, pkg: str) -> Path:
        """``apt-get download`` the kernel .deb and ``dpkg -x`` it; depmod."""
        version = pkg.removeprefix("linux-image-")
        root = self.cache / "kernel" / version
        if (root / "boot" / f"vmlinuz-{version}").is_file() and \
                (root / "lib" / "modules" / version / "modules.dep").is_file():
            return root
        debs = self.cache / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        self.log(f"lab: apt-get download {pkg}")
        for old in debs.glob(f"{pkg}_*.deb"):
            old.unlink()
        self.apt_get("download", pkg, what=f"apt-get download {pkg} (run apt-get update and retry)",
                  cwd=debs)
        found = sorted(debs.glob(f"{pkg}_*.deb"))
        if not found:
            raise LabError(f"apt-get download {pkg} left no .deb in {debs}")
        # Extract next to the final place, then rename: an interrupted setup
        # never leaves a half kernel that looks complete.
        tmp = root.with_name(root.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.log(f"lab: dpkg -x {found[-1].name}")
        res = self.run(["dpkg", "-x", str(found[-1]), str(tmp)])
        if res.returncode != 0:
            raise LabError(f"dpkg -x {found[-1].name} failed: {last_line(res.stderr)}")
        # depmod now, once, rather than in every guest boot.
        res = self.run(["depmod", "-b", str(tmp), version])
        if res.returncode != 0:
            raise LabError(f"depmod for {version} failed: {last_line(res.stderr)} (is kmod installed?)")
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
        found[-1].unlink()
        return root

    def ensure(self, refresh: bool = False) -> Stamp:
        """Everything the lab needs; quick when the stamp says it is done.
        ``refresh`` asks apt again which kernel is current (after an update)."""
        self.cache.mkdir(parents=True, exist_ok=True)
        stamp = read_stamp(self.cache)
        if refresh:
            if self.is_root:
                self.apt_update()
            stamp = None
        if stamp is not None and stamp.usable() and not self.missing_packages():
            self.log(f"lab: ready (kernel {stamp.kernel}, cache {self.cache})")
            return stamp
        installed = self.install_packages()
        if installed:
            self.log(f"lab: installed {' '.join(installed)}")
        pkg = stamp.kernel_package if stamp is not None and stamp.usable() else self.resolve_kernel()
        root = self.fetch_kernel(pkg)
        stamp = Stamp(STAMP_SCHEMA, pkg.removeprefix("linux-image-"), pkg, str(root), PACKAGES)
        write_stamp(self.cache, stamp)
        self.log(f"lab: ready (kernel {stamp.kernel}, cache {self.cache})")
        return stamp


def require_stamp(cache: Path) -> Stamp:
    """The stamp of a finished setup, or a one-line error saying to run it."""
    stamp = read_stamp(cache)
    if stamp is None or not stamp.usable():
        raise LabError(f"the lab is not set up in {cache}: run `sanspi lab setup` (as root) first")
    return stamp


def native_rdma(run: Runner = default_runner, sysfs: Path = Path("/sys/class/infiniband")) -> str | None:
    """Why the host's own kernel can run verbs (a device, or an rxe module),
    or None. Then ``run`` needs no guest for one host."""
    try:
        devices = sorted(p.name for p in sysfs.iterdir())
    except OSError:
        devices = []
    if devices:
        return f"device {devices[0]}"
    res = run(["modprobe", "-n", "-q", "rdma_rxe"])
    if res.returncode == 0:
        return "rdma_rxe module"
    return None
