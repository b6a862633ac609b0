"""Long campaigns: the lockstep state machine run by HypoFuzz over N
processes, with one shared example database.

How ``sanspi conform --workers N --minutes M`` goes (``campaign``):

0. It replays the examples the provider's database holds, with Hypothesis
   (``run_campaign(replay_only=True)``); a divergence there is the report,
   and HypoFuzz is not started. HypoFuzz 25.11.1 cannot replay a stateful
   test's stored examples itself: a stored choice sequence holds the
   machine's forced draws (the "go on or stop" choice before each step),
   which HypoFuzz's provider is never asked for, so its replay slips by one
   choice and runs another example; the failure then looks fixed and
   HypoFuzz moves it out of the keys Hypothesis replays.
1. It starts N HypoFuzz worker processes (``worker_main``) on the test in
   ``conform/fuzz_target.py``, naming the provider, the model's pages, the steps an example may take,
   the example database and a results folder in ``SANSPI_FUZZ_*``
   variables (``Target``). Each worker process collects the target, whose
   test is the ``Lockstep`` machine bound to that provider by
   ``make_machine``, exactly as ``run_campaign`` binds it: the same machine
   has the same Hypothesis database key, so what a worker stores, a plain
   ``sanspi conform`` or the ``sanspi_conformance`` fixture replays.
2. Every worker keeps a record of its examples (steps, coverage, and the
   first divergence with the trace its World logged) in a file of its own in
   the results folder, written at most once a second and at once on a
   divergence (``Recorder``).
3. The run stops itself after M minutes, or as soon as a worker has
   diverged. Left alone, HypoFuzz runs for ever, and on a failure spends up
   to an hour in Hypothesis's shrinker, which the campaign replaces by
   ``conform/shrink.py``. HypoFuzz has stored the failing example in the
   database the moment it found it, so stopping loses nothing.
4. The records are summed into one ``CampaignResult`` and the divergence's
   trace is shrunk on fresh providers (``summarize``): the report is the one
   ``sanspi conform`` writes, with its runnable pytest file.

For rxe on a host without RDMA, ``sanspi conform`` runs this inside N lab
guests, one worker each, and sums their results (conform/cli.py).
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import attrs

from sanspi.conform.campaign import CampaignResult, shrink_divergence
from sanspi.conform.coverage import Coverage
from sanspi.conform.world import Logged, World
from sanspi.impl.interface import ProviderFactory
from sanspi.model.state import Config

#: The pytest file HypoFuzz collects: its one test is the bound Lockstep machine.
TARGET_FILE = Path(__file__).with_name("fuzz_target.py")
#: A worker writes its record at most this often (and at once on a divergence).
FLUSH_S = 1.0
#: HypoFuzz stores a failing example from a background thread: this long
#: after a worker has recorded a divergence, the example is in the database.
SETTLE_S = 2.0
#: How long the workers may take to start (collect the target, open the
#: provider) before the first example: minutes inside a lab guest under TCG.
STARTUP_S = 900.0


class FuzzError(Exception):
    """The fuzzer could not run or stopped on its own: one line for the user."""


@attrs.frozen
class Target:
    """What a fuzz worker runs, passed in its environment."""

    provider: str  # sim, rxe, mutant:NAME or MODULE:FACTORY
    pages: int | None  # --pages, or None: the provider's own
    steps: int  # steps an example may take
    database: str | None  # a folder, a Redis URL, or None: the default folder
    results: Path  # where the workers' records go

    PREFIX = "SANSPI_FUZZ_"

    def environment(self) -> dict[str, str]:
        return {f"{self.PREFIX}PROVIDER": self.provider, f"{self.PREFIX}PAGES": str(self.pages or ""),
                f"{self.PREFIX}STEPS": str(self.steps), f"{self.PREFIX}DATABASE": self.database or "",
                f"{self.PREFIX}RESULTS": str(self.results)}

    @classmethod
    def from_environment(cls, env: dict[str, str] | os._Environ[str] = os.environ) -> "Target":
        try:
            pages = env[f"{cls.PREFIX}PAGES"]
            return cls(env[f"{cls.PREFIX}PROVIDER"], int(pages) if pages else None, int(env[f"{cls.PREFIX}STEPS"]),
                       env[f"{cls.PREFIX}DATABASE"] or None, Path(env[f"{cls.PREFIX}RESULTS"]))
        except (KeyError, ValueError) as exc:
            raise FuzzError(f"the fuzz target needs SANSPI_FUZZ_PROVIDER, _PAGES, _STEPS, _DATABASE and _RESULTS "
                            f"(sanspi conform --workers sets them): {exc}") from None


@attrs.define
class WorkerRecord:
    """What one worker process's examples did, so far."""

    worker: str  # host:pid
    started: float  # wall clock (time.time()) when its first example began
    updated: float  # when this record was written
    examples: int = 0
    steps: int = 0
    coverage: Coverage = attrs.field(factory=Coverage)
    divergence: str | None = None  # the first, as found
    trace: tuple[Logged, ...] = ()  # its World's log
    found_at: float = 0.0  # wall clock when it was found
    found_example: int = 0  # which of this worker's examples (from 1) it was


class Recorder:
    """``on_world`` for the machine in a fuzz worker: folds each finished
    example into the process's record and writes it to the results folder.

    HypoFuzz forks its workers after collecting the target in the parent
    process, so the record starts afresh in each process that runs examples.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pid: int | None = None
        self.record: WorkerRecord | None = None
        self.world: World | None = None
        self.flushed = 0.0

    def on_world(self, world: World) -> None:
        if self.pid != os.getpid():
            self.pid, now = os.getpid(), time.time()
            self.record, self.world = WorkerRecord(f"{socket.gethostname()}:{self.pid}", now, now), None
        found = self._fold()
        self.world = world  # its example runs now; it is folded when the next one begins
        if found or time.monotonic() - self.flushed >= FLUSH_S:
            self.flush()

    def _fold(self) -> bool:
        w, r = self.world, self.record
        if w is None or r is None:
            return False
        r.examples += 1
        r.steps += len(w.log)
        r.coverage.add(w.coverage)
        if w.divergence and r.divergence is None:
            r.divergence, r.trace, r.found_at = w.divergence.splitlines()[0], tuple(w.log), time.time()
            r.found_example = r.examples
            return True
        return False

    def flush(self) -> None:
        assert self.record is not None
        self.record.updated = time.time()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"worker-{socket.gethostname()}-{self.pid}.pickle"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(self.record))
        os.replace(tmp, path)  # a reader never sees half a record
        self.flushed = time.monotonic()


def read_records(folder: Path) -> list[WorkerRecord]:
    """Every worker's record in ``folder``. They are pickles our own workers
    wrote on this machine (or in its lab guests), never anyone else's input."""
    out = []
    for path in sorted(folder.glob("worker-*.pickle")):
        try:
            out.append(pickle.loads(path.read_bytes()))
        except (OSError, EOFError, pickle.UnpicklingError):  # replaced while read: the next poll has it
            continue
    return out


def fuzz_test_case(env: dict[str, str] | os._Environ[str] = os.environ):
    """The Hypothesis test HypoFuzz fuzzes (conform/fuzz_target.py): the
    Lockstep machine on the provider ``Target`` names, recording into the
    results folder. HypoFuzz fuzzes only tests whose database is the default
    one, so the provider's example database becomes the default profile's;
    HypoFuzz passes over a derandomized test, so the profile is built from
    Hypothesis's ``default`` one, not from a ``ci`` one loaded by itself."""
    from hypothesis import HealthCheck, settings

    from sanspi.conform.exampledb import open_database
    from sanspi.conform.machine import make_machine
    from sanspi.conform.providers import open_provider
    from sanspi.seeded import own_settings

    target = Target.from_environment(env)
    factory, _, cfg = open_provider(target.provider, target.pages)
    # HypoFuzz passes over a test that suppresses the nested-@given check
    quiet = [h for h in HealthCheck if h is not HealthCheck.nested_given]
    settings.register_profile("sanspi-fuzz", own_settings(
        database=open_database(target.database, target.provider, cfg), deadline=None, suppress_health_check=quiet,
        stateful_step_count=target.steps))
    settings.load_profile("sanspi-fuzz")
    case = make_machine(factory, cfg, Recorder(target.results).on_world).TestCase
    case.settings = settings()
    return case


def hypofuzz_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hypofuzz")
    except PackageNotFoundError:
        return None


#: What HypoFuzz's workers collect: the target, without the project's pytest configuration.
PYTEST_ARGS = (str(TARGET_FILE), "-p", "no:cacheprovider", "--import-mode=importlib", "-q")


def worker_main() -> None:
    """One HypoFuzz worker on the fuzz target (``Target`` in the
    environment), until it is stopped.

    It runs HypoFuzz's own worker (``FuzzWorker``, what ``hypothesis fuzz``
    starts in each process) without ``hypothesis fuzz``'s hub: in 25.11.1 the
    hub checks once a minute that some worker still has a test to fuzz, and a
    worker first says so after a batch of 100 examples; a lockstep example
    takes about a second under HypoFuzz's line tracing, so the hub took the
    silence for "every test failed" and stopped every worker after a minute.
    The hub would also hand a single test to one process only.
    """
    from hypofuzz import detection
    from hypofuzz.collection import collect_tests
    from hypofuzz.hypofuzz import FuzzWorker

    detection._in_hypofuzz_run = True  # as `hypothesis fuzz` sets it in its workers
    nodeids = [t.nodeid for t in collect_tests(PYTEST_ARGS).fuzz_targets]
    state = {"hub_state": {"nodeids": nodeids}, "worker_state": {"nodeids": {}, "valid_nodeids": []}}
    FuzzWorker(pytest_args=PYTEST_ARGS, shared_state=state).start()


def run(target: Target, workers: int, seconds: float, *, dashboard: int | None = None,
        progress: Callable[[str], None] | None = None, poll_s: float = 1.0) -> list[WorkerRecord]:
    """HypoFuzz in ``workers`` processes (``worker_main``) for ``seconds``
    from the first example (their start-up is not counted, up to
    STARTUP_S), stopped early once one has diverged; the workers' records.
    ``dashboard``: serve HypoFuzz's dashboard on this port (``hypothesis
    fuzz --dashboard-only``) while it runs."""
    if hypofuzz_version() is None:
        raise FuzzError("--workers runs HypoFuzz, which is not installed here: pip install 'sanspi[fuzz]' "
                        "(make venv installs it)")
    if target.results.exists():
        shutil.rmtree(target.results)
    target.results.mkdir(parents=True)
    env = {**os.environ, **target.environment()}
    env.pop("HYPOTHESIS_NO_PLUGINS", None)  # HypoFuzz is a Hypothesis plugin
    argvs = [[sys.executable, "-c", "from sanspi.conform.fuzz import worker_main; worker_main()"]] * workers
    logs = [target.results / f"worker-{i}.log" for i in range(workers)]
    if dashboard is not None:
        argvs.append([sys.executable, "-c", "from hypothesis.extra.cli import main; main()", "fuzz",
                      "--dashboard-only", "--port", str(dashboard), "--", *PYTEST_ARGS])
        logs.append(target.results / "dashboard.log")
    procs: list[subprocess.Popen] = []
    start, first = time.monotonic(), None  # first: when the first example began
    previous = signal.signal(signal.SIGTERM, _interrupted)  # a stopped run still stops its workers
    try:
        for argv, log in zip(argvs, logs):
            with open(log, "w") as out:
                procs.append(subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, start_new_session=True))  # a group each
        while True:
            time.sleep(poll_s)
            records, now = read_records(target.results), time.monotonic()
            if records and first is None:
                first = now
            if first is None and now - start > STARTUP_S:
                raise FuzzError(f"no worker ran an example in {STARTUP_S:.0f} s (output: {logs[0]}; its last "
                                f"line: {_last_line(logs[0])})")
            left = seconds - (now - (first or now))
            if progress:
                progress(f"{len(records)}/{workers} workers: {sum(r.examples for r in records)} examples, "
                         f"{sum(r.steps for r in records)} steps, {max(0, left):.0f} s left")
            if any(r.divergence for r in records):
                time.sleep(SETTLE_S)
                break
            if left <= 0:
                break
            for proc, log in zip(procs, logs):
                if proc.poll() is not None:
                    raise FuzzError(f"a HypoFuzz process stopped by itself after {time.monotonic() - start:.0f} s "
                                    f"(exit {proc.returncode}): {_last_line(log)}; its output: {log}")
        records = read_records(target.results)  # as of the stop: what runs on after it is not counted
    finally:
        _stop(procs)
        signal.signal(signal.SIGTERM, previous)
    return records


def _interrupted(signum, frame) -> None:
    raise KeyboardInterrupt


def _stop(procs: list[subprocess.Popen]) -> None:
    """Each HypoFuzz process's group: SIGTERM, then SIGKILL. (A HypoFuzz
    worker goes on after SIGINT; what it found is in the database already.)"""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        running = [p for p in procs if p.poll() is None]
        if not running:
            break
        for p in running:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        for p in running:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    for p in procs:  # a hub may be gone while its worker lingers in the group
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _last_line(path: Path) -> str:
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def campaign(target: Target, workers: int, seconds: float, factory: ProviderFactory, cfg: Config, name: str,
             database, *, dashboard: int | None = None,
             progress: Callable[[str], None] | None = None) -> tuple[CampaignResult, list[WorkerRecord]]:
    """A long campaign: the stored examples first, then HypoFuzz (module
    docstring). The result and the workers' records (none when a stored
    example diverged)."""
    from sanspi.conform.campaign import run_campaign

    stored = run_campaign(factory, cfg, 1, target.steps, database=database, name=name, replay_only=True)
    if not stored.ok:
        return stored, []
    records = run(target, workers, seconds, dashboard=dashboard, progress=progress)
    return summarize(records, name, factory, cfg, progress=progress), records


def summarize(records: list[WorkerRecord], name: str, factory: ProviderFactory, cfg: Config,
              shrink_budget_s: float = 120.0, progress: Callable[[str], None] | None = None) -> CampaignResult:
    """The workers' records as one CampaignResult: examples, steps and
    coverage summed over the workers; the seconds from the first example
    to the last record; the first divergence found, shrunk on fresh providers."""
    coverage = Coverage()
    for r in records:
        coverage.add(r.coverage)
    began = min(r.started for r in records)
    seconds = max(r.updated for r in records) - began
    diverged = sorted((r for r in records if r.divergence), key=lambda r: r.found_at)
    result = CampaignResult(name, sum(r.examples for r in records), sum(r.steps for r in records), seconds, coverage)
    if not diverged:
        return result
    first = diverged[0]
    trace, divergence, shrink_s, minimal = first.trace, first.divergence, 0.0, False
    if trace:
        if progress:
            progress(f"{name}: divergence found by worker {first.worker}; shrinking its {len(trace)} steps")
        trace, divergence, shrink_s, minimal = shrink_divergence(factory, cfg, trace, divergence, shrink_budget_s)
    return attrs.evolve(result, divergence=divergence, trace=trace, find_seconds=first.found_at - began,
                        shrink_seconds=shrink_s, found_steps=len(first.trace), minimal=minimal,
                        found_example=first.found_example)


def merge(results: list[CampaignResult]) -> CampaignResult:
    """Several machines' (lab guests') results as one: sums, the longest
    window, the first divergence as each found it (already shrunk there)."""
    coverage = Coverage()
    for r in results:
        coverage.add(r.coverage)
    first = min((r for r in results if not r.ok), key=lambda r: r.find_seconds, default=None)
    merged = attrs.evolve(results[0], examples=sum(r.examples for r in results),
                          steps=sum(r.steps for r in results), seconds=max(r.seconds for r in results),
                          coverage=coverage)
    if first is None:
        return merged
    return attrs.evolve(merged, divergence=first.divergence, trace=first.trace, find_seconds=first.find_seconds,
                        shrink_seconds=first.shrink_seconds, found_steps=first.found_steps, minimal=first.minimal,
                        found_example=first.found_example)
