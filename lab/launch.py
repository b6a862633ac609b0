"""Running a lab plan: boot the guests, relay their output, enforce deadlines.

Each guest is one ``vng`` process in its own process group, so a timeout can
stop it (and the QEMU under it) without touching anything else. The guest
script announces itself with a ``lab: kernel ...`` line on stderr once rxe is
up; that line is the end of "booting", and a guest that does not print it
within the boot timeout is stopped with a one-line error, never left hanging.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Sequence

from sanspi.lab.topology import ERROR_TAG, LAB_FAILURE, READY_TAG


@dataclass
class Outcome:
    """What came back from one guest."""

    name: str
    status: int | None = None  # None: it was stopped
    ready_line: str | None = None
    lab_errors: list[str] = field(default_factory=list)
    booted_after: float | None = None


class LabTimeout(Exception):
    """A guest did not boot, or the run did not finish, in time."""


def free_udp_ports(n: int = 2) -> tuple[int, ...]:
    """Ports on 127.0.0.1 that nothing holds now (for the guests' UDP link)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return tuple(s.getsockname()[1] for s in socks)
    finally:
        for s in socks:
            s.close()


def write_scripts(folder: Path, scripts: Sequence[str]) -> list[Path]:
    """Guest scripts go through the shared filesystem, not the kernel command
    line: vng passes ``--exec`` base64-encoded there, and x86 caps the
    command line at 2 KiB."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for text in scripts:
        fd, name = tempfile.mkstemp(prefix="guest-", suffix=".sh", dir=folder)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(name, 0o644)
        paths.append(Path(name))
    return paths


def script_slots(folder: Path, n: int) -> list[Path]:
    """Reserve ``n`` script file names (the vng command lines must name them
    before the scripts' text is final)."""
    return write_scripts(folder, [""] * n)


def _pump(stream: IO[str], sink: IO[str], prefix: str, outcome: Outcome,
          ready: threading.Event, started: float, watch: bool) -> None:
    for line in stream:
        if watch and line.startswith(READY_TAG) and outcome.ready_line is None:
            outcome.ready_line = line.rstrip("\n")
            outcome.booted_after = time.monotonic() - started
            ready.set()
        if watch and line.startswith(ERROR_TAG):
            outcome.lab_errors.append(line[len(ERROR_TAG):].strip())
        sink.write(prefix + line)
        sink.flush()


def _stop(proc: subprocess.Popen[str]) -> None:
    """Stop one guest: its vng and its QEMU share a process group we made."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


def run_processes(argvs: Sequence[Sequence[str]], names: Sequence[str], *,
                  env: dict[str, str], boot_timeout: float, timeout: float,
                  stdout: IO[str] = sys.stdout, stderr: IO[str] = sys.stderr,
                  log=None, interactive: bool = False) -> list[Outcome]:
    """Start every process at once, relay output (prefixed by name when more
    than one), and wait for all. Raises LabTimeout after stopping them all."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    prefix = len(argvs) > 1
    started = time.monotonic()
    procs: list[subprocess.Popen[str]] = []
    outcomes = [Outcome(name) for name in names]
    readies = [threading.Event() for _ in argvs]
    pumps: list[threading.Thread] = []
    try:
        for argv, outcome, ready in zip(argvs, outcomes, readies):
            if interactive:
                proc = subprocess.Popen(list(argv), env=env, start_new_session=False)
                ready.set()
            else:
                proc = subprocess.Popen(list(argv), env=env, text=True, bufsize=1,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, start_new_session=True,
                                        errors="replace")
                tag = f"{outcome.name}| " if prefix else ""
                for stream, sink, watch in ((proc.stdout, stdout, False), (proc.stderr, stderr, True)):
                    t = threading.Thread(target=_pump, daemon=True,
                                         args=(stream, sink, tag, outcome, ready, started, watch))
                    t.start()
                    pumps.append(t)
            procs.append(proc)
        last_note = started
        while any(p.poll() is None for p in procs):
            now = time.monotonic()
            for proc, outcome, ready in zip(procs, outcomes, readies):
                if not ready.is_set() and proc.poll() is None and now - started > boot_timeout:
                    raise LabTimeout(f"{outcome.name} did not boot within {boot_timeout:.0f} s "
                                     f"(busy host? raise SANSPI_LAB_BOOT_TIMEOUT; "
                                     f"`vng --verbose` shows the console)")
            if now - started > timeout:
                raise LabTimeout(f"the run did not finish within {timeout:.0f} s (--timeout)")
            if not all(r.is_set() for r in readies) and now - last_note >= 30:
                waiting = [o.name for o, r in zip(outcomes, readies) if not r.is_set()]
                log(f"lab: still booting {', '.join(waiting)} ({now - started:.0f} s)")
                last_note = now
            time.sleep(0.2)
        for t in pumps:
            t.join(timeout=5)
        for proc, outcome in zip(procs, outcomes):
            outcome.status = proc.returncode
        return outcomes
    finally:
        for proc in procs:
            _stop(proc)
        for t in pumps:
            t.join(timeout=1)


def summarize(outcomes: Sequence[Outcome]) -> tuple[int, list[str]]:
    """One exit status for the run (the first failure's, else 0) and the
    lines that explain a lab-side failure."""
    status = 0
    problems: list[str] = []
    for o in outcomes:
        if o.lab_errors:
            problems.extend(f"{o.name}: {e}" for e in o.lab_errors)
        elif o.status == LAB_FAILURE and o.ready_line is None:
            problems.append(f"{o.name}: the guest stopped before the lab was up "
                            f"(status {o.status})")
        elif o.ready_line is None and o.status not in (0, None):
            problems.append(f"{o.name}: vng failed (status {o.status}) before the guest "
                            f"was up; see its messages above")
        if o.status and status == 0:
            status = o.status
    return status, problems
