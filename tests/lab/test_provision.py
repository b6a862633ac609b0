"""`sanspi lab setup` with a fake system: what it runs, and that the stamp
makes a second run do nothing but one check."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sanspi.lab import provision
from sanspi.lab.provision import LabError, Provisioner

KPKG = "linux-image-6.1.0-99-amd64"
KVER = "6.1.0-99-amd64"


class FakeSystem:
    """Answers the commands setup runs, and records them."""

    def __init__(self, installed=provision.PACKAGES, fail: str | None = None):
        self.installed = set(installed)
        self.fail = fail  # a command word that fails
        self.calls: list[list[str]] = []

    def __call__(self, argv, cwd=None):
        argv = list(argv)
        self.calls.append(argv)
        words = [a for a in argv if not a.startswith("-")]

        def done(out="", rc=0, err=""):
            return subprocess.CompletedProcess(argv, rc, out, err)

        if self.fail and self.fail in argv:
            return done(rc=100, err=f"E: Unable to locate package {self.fail}\n")
        if argv[0] == "dpkg-query":
            pkgs = argv[3:]
            return done("".join(f"{p} ii \n" for p in pkgs if p in self.installed))
        if argv[0] == "apt-cache":
            return done(f"linux-image-amd64\n  Depends: {KPKG}\n")
        if argv[0] == "apt-get" and "install" in words:
            self.installed.update(words[words.index("install") + 1:])
            return done()
        if argv[0] == "apt-get" and "download" in words:
            (Path(cwd) / f"{words[-1]}_1.0_amd64.deb").write_bytes(b"deb")
            return done()
        if argv[0] == "dpkg" and argv[1] == "-x":
            root = Path(argv[3])
            (root / "boot").mkdir(parents=True)
            (root / "boot" / f"vmlinuz-{KVER}").write_bytes(b"kernel")
            return done()
        if argv[0] == "depmod":
            mods = Path(argv[2]) / "lib" / "modules" / argv[3]
            mods.mkdir(parents=True)
            (mods / "modules.dep").write_text("")
            return done()
        return done()

    def ran(self, word: str) -> int:
        return sum(1 for c in self.calls if word in c)


def test_setup_then_stamp_makes_it_a_no_op(tmp_path):
    fake = FakeSystem()
    stamp = Provisioner(tmp_path, run=fake, log=lambda m: None, is_root=True).ensure()
    assert stamp.kernel == KVER and stamp.vmlinuz.is_file()
    assert fake.ran("download") == 1 and fake.ran("-x") == 1 and fake.ran("depmod") == 1
    assert not list((tmp_path / "debs").glob("*.deb")), "the .deb is removed once extracted"

    again = FakeSystem()
    assert Provisioner(tmp_path, run=again, log=lambda m: None, is_root=True).ensure() == stamp
    assert [c[0] for c in again.calls] == ["dpkg-query"], again.calls


def test_a_removed_kernel_is_fetched_again(tmp_path):
    Provisioner(tmp_path, run=FakeSystem(), log=lambda m: None, is_root=True).ensure()
    (tmp_path / "kernel" / KVER / "boot" / f"vmlinuz-{KVER}").unlink()
    fake = FakeSystem()
    Provisioner(tmp_path, run=fake, log=lambda m: None, is_root=True).ensure()
    assert fake.ran("download") == 1


def test_missing_packages_are_installed_after_update(tmp_path):
    fake = FakeSystem(installed=["kmod"])
    Provisioner(tmp_path, run=fake, log=lambda m: None, is_root=True).ensure()
    installs = [c for c in fake.calls if "install" in c]
    assert len(installs) == 1 and "qemu-system-x86" in installs[0] and "kmod" not in installs[0]
    first_update = next(i for i, c in enumerate(fake.calls) if "update" in c)
    assert first_update < fake.calls.index(installs[0])


def test_not_root_names_the_packages(tmp_path):
    prov = Provisioner(tmp_path, run=FakeSystem(installed=[]), log=lambda m: None, is_root=False)
    with pytest.raises(LabError, match="qemu-system-x86.*as root"):
        prov.ensure()


def test_failed_install_is_one_line_naming_the_package(tmp_path):
    fake = FakeSystem(installed=[p for p in provision.PACKAGES if p != "perftest"], fail="perftest")
    with pytest.raises(LabError) as err:
        Provisioner(tmp_path, run=fake, log=lambda m: None, is_root=True).ensure()
    assert "perftest" in str(err.value) and "\n" not in str(err.value)


def test_failed_download_names_the_kernel_package(tmp_path):
    fake = FakeSystem(fail=KPKG)
    with pytest.raises(LabError, match=f"apt-get download {KPKG}"):
        Provisioner(tmp_path, run=fake, log=lambda m: None, is_root=True).ensure()
    assert provision.read_stamp(tmp_path) is None


def test_kernel_package_is_read_from_apt_cache_depends():
    text = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n"
    assert provision.kernel_package_from_depends(text) == "linux-image-6.1.0-56-amd64"
    assert provision.kernel_package_from_depends("linux-image-amd64\n") is None


def test_cache_dir_follows_sanspi_cache(tmp_path):
    """SANSPI_CACHE is sanspi's cache folder; the lab keeps its own lab/ in it."""
    assert provision.cache_dir({"SANSPI_CACHE": str(tmp_path)}) == tmp_path / "lab"
    assert provision.cache_dir({}).parts[-3:] == (".cache", "sanspi", "lab")


def test_a_stale_stamp_is_not_usable(tmp_path):
    Provisioner(tmp_path, run=FakeSystem(), log=lambda m: None, is_root=True).ensure()
    stamp = provision.read_stamp(tmp_path)
    assert stamp is not None and stamp.usable()
    (tmp_path / provision.STAMP_NAME).write_text("{not json")
    assert provision.read_stamp(tmp_path) is None
    with pytest.raises(LabError, match="sanspi lab setup"):
        provision.require_stamp(tmp_path)


def test_native_rdma_sees_devices_or_the_module(tmp_path):
    ok = lambda argv: subprocess.CompletedProcess(argv, 0, "", "")  # noqa: E731
    no = lambda argv: subprocess.CompletedProcess(argv, 1, "", "")  # noqa: E731
    assert provision.native_rdma(no, tmp_path / "absent") is None
    assert provision.native_rdma(ok, tmp_path / "absent") == "rdma_rxe module"
    (tmp_path / "mlx5_0").mkdir()
    assert provision.native_rdma(no, tmp_path) == "device mlx5_0"


def test_refresh_asks_apt_again(tmp_path):
    Provisioner(tmp_path, run=FakeSystem(), log=lambda m: None, is_root=True).ensure()
    fake = FakeSystem()
    Provisioner(tmp_path, run=fake, log=lambda m: None, is_root=True).ensure(refresh=True)
    assert fake.ran("update") == 1 and fake.ran("depends") == 1
    assert fake.ran("download") == 0, "the same kernel is already in the cache"
