"""``sanspi lab peer-tests``: rdma-core's own pyverbs suite, run on rxe.

Where the suite comes from: Debian's ``python3-pyverbs`` package ships
rdma-core's ``tests/`` (gzipped, as documentation) under
``usr/share/doc/rdma-core/tests``. We ``apt-get download`` the very version
installed and ``dpkg -x`` it into the cache, so the tests match the pyverbs
they exercise (rdma-core 44 here) and none of their code enters this repo.
The other Debian route, ``apt-get source rdma-core``, needs deb-src lines and
the upstream ``rdma-core_44.0.orig.tar.gz``, which the archive reachable from
these machines answers with 404; a copy under /usr/share/doc on the host may
be stripped by dpkg path excludes on minimal images, so it is not relied on.
"""

from __future__ import annotations

import gzip
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sanspi.lab.provision import LabError, Provisioner

PACKAGE = "python3-pyverbs"
DOC_TESTS = Path("usr/share/doc/rdma-core/tests")
README_TITLE = "rxe lab: rdma-core's own tests"
#: Why some skips happen on rxe (a phrase in the reason -> why), for the README.
SKIP_NOTES = {
    "doesn't have net interface":
        "rdma-core 44's tests find the netdev through "
        "/sys/class/infiniband/<dev>/device/net; an rxe device has no `device` "
        "link (only `parent`), so every rdma_cm test skips on rxe, whatever the "
        "netdev (seen on the dummy netdev and on the two-host virtio NIC). "
        "rdma_cm itself works there (lab/RXE-FACTS.md)",
}
#: What we know about failures seen in the lab (test id -> why), printed
#: beside them in the README so a reader need not rerun to learn the cause.
KNOWN = {
    "test_qpex.QpExTestCase.test_qp_ex_rc_atomic_write":
        "librxe of rdma-core 44 accepts IBV_QP_EX_WITH_ATOMIC_WRITE, but the 6.1 "
        "kernel's rdma_rxe has no IB_WR_ATOMIC_WRITE in its work-request opcode "
        "table (it came to rxe upstream later), so the request completes with "
        "IBV_WC_LOC_QP_OP_ERR: a kernel/userspace version gap, not a lab fault",
}


def ensure_suite(prov: Provisioner) -> Path:
    """The suite's folder in the cache (``.../tests/run_tests.py``)."""
    version = prov.package_version(PACKAGE)
    if version is None:
        raise LabError(f"{PACKAGE} is not installed: run `sanspi lab setup` first")
    base = prov.cache / "rdma-core-tests" / version
    dest = base / "tests"
    if (dest / "run_tests.py").is_file():
        return dest
    debs = prov.cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    for old in debs.glob(f"{PACKAGE}_*.deb"):
        old.unlink()
    prov.log(f"lab: apt-get download {PACKAGE}={version}")
    prov.apt_get("download", f"{PACKAGE}={version}",
              what=f"apt-get download {PACKAGE}={version} (run apt-get update and retry)",
              cwd=debs)
    found = sorted(debs.glob(f"{PACKAGE}_*.deb"))
    if not found:
        raise LabError(f"apt-get download {PACKAGE} left no .deb in {debs}")
    tmp = base.with_name(base.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    res = prov.run(["dpkg", "-x", str(found[-1]), str(tmp)])
    if res.returncode != 0:
        raise LabError(f"dpkg -x {found[-1].name} failed: {res.stderr.strip()[-200:]}")
    src = tmp / DOC_TESTS
    if not (src / "run_tests.py").is_file():
        raise LabError(f"{found[-1].name} carries no {DOC_TESTS}/run_tests.py; "
                       f"this Debian release does not ship rdma-core's tests")
    out = tmp / "tests"
    out.mkdir()
    for f in sorted(src.iterdir()):
        if f.name.endswith(".gz"):
            (out / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))
        elif f.is_file():
            shutil.copy2(f, out / f.name)
    shutil.rmtree(tmp / "usr")
    shutil.rmtree(base, ignore_errors=True)
    tmp.rename(base)
    found[-1].unlink()
    return dest


def suite_command(tests: Path) -> list[str]:
    """What the guest runs: the suite on the lab's device and GID index."""
    return ["sh", "-c", f'exec python3 {tests}/run_tests.py --dev "$SANSPI_LAB_DEVICE" '
                        f'--gid "$SANSPI_LAB_GID" -v']


_RAN = re.compile(r"^Ran (\d+) tests? in ([\d.]+)s")
#: The closing line: "OK", "OK (skipped=3)", "FAILED (failures=1, errors=2)".
_CLOSE = re.compile(r"^(OK|FAILED)(?: \((?P<counts>[^)]*)\))?$")
#: The report blocks after the run: "FAIL: test_x (tests.test_mr.MRTest.test_x)".
_BLOCK = re.compile(r"^(FAIL|ERROR): (\w+) \(([\w.]+)\)")
#: unittest -v puts a skip's reason after the dots, on the test's line (or on
#: its docstring's line): "... skipped 'reason'".
#: The line that names a test: "test_x (tests.test_mr.MRTest.test_x)".
_NAMED = re.compile(r"^test\w* \(tests\.(\w+)\.")
_SKIP = re.compile(r"\.\.\. skipped (['\"])(.*)\1$")


@dataclass
class SuiteResult:
    ran: int = 0
    seconds: float = 0.0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)  # "FAIL test_mr.MRTest.test_x"
    skip_reasons: dict[str, int] = field(default_factory=dict)  # reason -> count
    passed_by_module: dict[str, int] = field(default_factory=dict)  # test_qp -> count
    finished: bool = False

    @property
    def passed(self) -> int:
        return self.ran - self.failures - self.errors - self.skipped

    def counts(self) -> str:
        return (f"{self.ran} run: {self.passed} passed, {self.failures} failed, "
                f"{self.errors} errors, {self.skipped} skipped")


def _strip_prefix(line: str) -> str:
    """Drop the "h0| " that a multi-guest run puts before each line."""
    m = re.match(r"^h\d\| ", line)
    return line[m.end():] if m else line


def parse_unittest(text: str) -> SuiteResult:
    """Counts from unittest's verbose output: the closing "Ran N tests" and
    "OK/FAILED (...)" lines are the authority; the FAIL/ERROR report blocks
    name the tests; the per-test lines give skip reasons."""
    res = SuiteResult()
    module = None  # of the last test named; its verdict may be a line later
    for raw in text.splitlines():
        line = _strip_prefix(raw).rstrip()
        m = _NAMED.match(line)
        if m:
            module = m[1]
        if module and (line.endswith(" ... ok") or line.endswith(" ... expected failure")):
            res.passed_by_module[module] = res.passed_by_module.get(module, 0) + 1
            module = None
        m = _SKIP.search(line)
        if m:
            res.skip_reasons[m[2]] = res.skip_reasons.get(m[2], 0) + 1
            continue
        m = _BLOCK.match(line)
        if m:
            where = m[3].removeprefix("tests.")
            if not where.endswith("." + m[2]):
                where += "." + m[2]
            res.failed.append(f"{m[1]} {where}")
            continue
        m = _RAN.match(line)
        if m:
            res.ran, res.seconds = int(m[1]), float(m[2])
            continue
        m = _CLOSE.match(line)
        if m and res.ran:
            res.finished = True
            for item in (m["counts"] or "").split(","):
                key, _, value = item.strip().partition("=")
                if key == "failures":
                    res.failures = int(value)
                elif key == "errors":
                    res.errors = int(value)
                elif key == "skipped":
                    res.skipped = int(value)
    return res


def readme_section(res: SuiteResult, *, kernel: str, version: str, device: str,
                   wall: float, when: str) -> str:
    """The README.md section that records one run."""
    lines = [
        f"## {README_TITLE}",
        "",
        "`sanspi lab peer-tests` runs the pyverbs test suite of rdma-core "
        f"{version} (Debian's `python3-pyverbs` ships it under "
        "`/usr/share/doc/rdma-core/tests`; it is unpacked into the lab cache, "
        "never into this repo) inside the loopback guest: "
        f"`run_tests.py --dev {device} --gid 1 -v`.",
        "",
        f"Last recorded run ({when}, kernel {kernel}, device {device}, "
        f"{wall:.0f} s wall under TCG):",
        "",
        f"- **{res.counts()}**" + ("" if res.finished else " (the run did not finish)"),
    ]
    if res.passed_by_module:
        lines.append("- Passed, by module: " + ", ".join(
            f"{mod} {n}" for mod, n in sorted(res.passed_by_module.items(),
                                             key=lambda kv: (-kv[1], kv[0]))))
    if res.failed:
        lines.append("- Failures and errors:")
        for entry in res.failed:
            kind, _, name = entry.partition(" ")
            why = KNOWN.get(name)
            lines.append(f"  - {kind} `{name}`" + (f": {why}" if why else ""))
    if res.skip_reasons:
        lines.append("- Skips by reason (most common first):")
        for reason, n in sorted(res.skip_reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            why = next((w for k, w in SKIP_NOTES.items() if k in reason), None)
            lines.append(f"  - {n} × {reason[:140]}" + (f": {why}" if why else ""))
    lines.append("")
    return "\n".join(lines)


def record_in_readme(readme: Path, section: str) -> None:
    """Put ``section`` in README.md: replace an earlier copy of it, else
    append; create the file only if it does not exist."""
    text = readme.read_text() if readme.exists() else ""
    head = f"## {README_TITLE}"
    if head in text:
        start = text.index(head)
        nxt = text.find("\n## ", start + len(head))
        end = len(text) if nxt < 0 else nxt + 1
        text = text[:start] + section + ("\n" if nxt >= 0 else "") + text[end:]
    else:
        if text and not text.endswith("\n\n"):
            text += "\n" if text.endswith("\n") else "\n\n"
        text += section
    readme.write_text(text)
