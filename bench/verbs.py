"""The verbs figures, measured where rxe is (inside the lab's loopback guest):
the registration cache, RDMA WRITE/READ bandwidth and small-write latency of
the verbs provider (impl/verbs.py), each next to its reference measured in
the same process or the same guest session: pyverbs' own ``ibv_reg_mr`` and
perftest (``ib_write_bw``, ``ib_read_bw``, ``ib_write_lat``) on the same
device and address.

Every function returns plain dicts of seconds, bytes and counts; the ratios
are made in ``sanspi.bench.report``.
"""

from __future__ import annotations

import ctypes
import os
import re
import statistics
import subprocess
import threading
import time
from typing import Any, Callable

from sanspi.impl.interface import WsaBufEx
from sanspi.spi import MEM_READWRITE

PAGE = 4096
SOCK = 0
VERSION = 2 | 2 << 8


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Pair:
    """Two started verbs providers on this machine's rxe device, connected
    on socket 0 (host 0 connects to host 1's listener, as the World does)."""

    def __init__(self, pages0: int, pages1: int) -> None:
        from sanspi.impl.verbs import VerbsProvider

        self.p = (VerbsProvider(pages=pages0), VerbsProvider(pages=pages1))
        try:
            for p in self.p:
                if p.startup_ex(VERSION).status != 0:
                    raise RuntimeError(f"startup_ex failed on {p.device}: is rxe up? (sanspi lab run)")
            token = self.p[1].listen(SOCK)
            accepted: list = []
            t = threading.Thread(target=lambda: accepted.append(self.p[1].accept(SOCK)), daemon=True)
            t.start()
            ret = self.p[0].connect(SOCK, token)
            t.join(60)
            if ret.status != 0 or not accepted or accepted[0].status != 0:
                raise RuntimeError(f"the two providers did not connect: {ret}, {accepted}, "
                                   f"{self.p[0].errors + self.p[1].errors}")
        except BaseException:
            self.close()
            raise

    def mapped(self, host: int, nbytes: int) -> int:
        """Map and touch ``nbytes`` from the start of ``host``'s memory
        (an application's buffer is in use before it is registered)."""
        mem = self.p[host].memory
        npages = -(-nbytes // PAGE)
        mem.alloc(0, npages)
        ctypes.memset(mem.base, 0x5A, npages * PAGE)
        return mem.base

    def errors(self) -> list[str]:
        return self.p[0].errors + self.p[1].errors

    def close(self) -> None:
        for p in self.p:
            p.shutdown()


#: Samples of each kind taken together in a round of ``regcache``.
BLOCK = 8


def _reps(size: int, quick: bool) -> int:
    """Repetitions for a size: many for small buffers, a few for 64 MiB."""
    base = 40 if quick else 120
    return base if size <= 1 << 20 else max(5, base * (1 << 20) // size)


def regcache(sizes: list[int], quick: bool = False) -> list[dict]:
    """Per size: a cache hit of WSPRegisterMemory and of WSPRegisterRdmaMemory
    (register on a range already cached; the deregistration that puts it
    back into the cache is timed apart, as the pair's time), against
    pyverbs' own ``MR(pd, ...)`` on the same, touched pages, and against
    ``MR`` + ``close()``. They are taken in turn, ``BLOCK`` samples of each
    per round, so that every median saw the same load of the machine (under
    TCG on shared cores it changes by several times within a minute), while
    a hit still follows hits (right after an ``ibv_reg_mr`` of 64 MiB the
    emulator's caches are cold, and a hit costs up to twice as much)."""
    import pyverbs.enums as e
    from pyverbs.mr import MR

    pair = Pair(-(-max(sizes) // PAGE) + 1, 2)
    rows = []
    try:
        p = pair.p[0]
        base = pair.mapped(0, max(sizes))
        local_access = e.IBV_ACCESS_LOCAL_WRITE
        rdma_access = e.IBV_ACCESS_MW_BIND | e.IBV_ACCESS_LOCAL_WRITE  # what a MEM_READWRITE registration asks
        for size in sizes:
            n = _reps(size, quick)
            local = _Hits(lambda: p.register_memory(SOCK, base, size, MEM_READWRITE),
                          lambda v: p.deregister_memory(SOCK, v))
            rdma = _Hits(lambda: p.register_rdma_memory(SOCK, base, size, MEM_READWRITE, 32),
                         lambda v: p.deregister_rdma_memory(SOCK, v.descriptor))
            fresh, regdereg, fresh_rdma = [], [], []
            for done in range(0, n, BLOCK):
                block = range(min(BLOCK, n - done))
                for _ in block:
                    t0 = time.perf_counter()
                    mr = MR(p.dev.pd, size, local_access, address=base)
                    t1 = time.perf_counter()
                    mr.close()
                    t2 = time.perf_counter()
                    fresh.append(t1 - t0)
                    regdereg.append(t2 - t0)
                    t0 = time.perf_counter()
                    mr = MR(p.dev.pd, size, rdma_access, address=base)
                    fresh_rdma.append(time.perf_counter() - t0)
                    mr.close()
                for _ in block:
                    local.sample()
                for _ in block:
                    rdma.sample()
            parts = hit_parts(p, base, size, n)
            common = sum(parts[k] for k in ("spi_guard_us", "conn_state_us", "table_lookup_us", "pages_mapped_us"))
            parts["local_rest_us"] = _median_us(local.hits) - common
            parts["rdma_rest_us"] = _median_us(rdma.hits) - common - parts["window_us"]
            if p.cache_callback(base, size).status != 0:  # drop the cached entries: the table stays small
                raise RuntimeError(f"cache_callback refused to release {size} bytes: {p.errors}")
            rows.append({
                "size": size, "reps": n,
                "reg_mr_us": _median_us(fresh), "reg_mr_rdma_us": _median_us(fresh_rdma),
                "reg_dereg_us": _median_us(regdereg),
                "hit_local_us": _median_us(local.hits), "hit_local_pair_us": _median_us(local.pairs),
                "hit_rdma_us": _median_us(rdma.hits), "hit_rdma_pair_us": _median_us(rdma.pairs),
                "hit_parts": parts,
            })
        if pair.errors():
            raise RuntimeError(f"the provider recorded exceptions: {pair.errors()}")
    finally:
        pair.close()
    return rows


def hit_parts(p: Any, base: int, size: int, n: int) -> dict:
    """Where a cache hit's time goes, part by part: each part the hit path
    of ``VerbsProvider`` runs (``register_memory``, ``_cache_hit``), run
    alone ``n`` times on the same cached entries (medians). The SPI guard
    is a hit through ``register_memory`` less its ``_cache_hit`` alone; an
    expression the hit runs inline is timed in a function less the cost of
    an empty call; a call the hit makes is timed as it is; the window is
    the bind of a window made ready ahead (``prepare_ahead_us``, the work
    the deregistration does for the next hit, is shown apart), and under it
    the bind's floor: its post (``bind_post_us``: one system call, inside
    which rxe binds) and reading its completion (``bind_completion_us``),
    next to one empty system call in the same guest (``syscall_us``). ``regcache``
    adds ``local_rest_us``/``rdma_rest_us``: what the parts leave of the
    whole hit (argument checks, the branches between the parts)."""
    from sanspi.impl.verbs import LOCAL, RDMA

    ep = p._eps[SOCK]
    mem = p.memory
    rdma_key = (RDMA, SOCK, base, size, MEM_READWRITE)
    local, rdma = p.table.lookup((LOCAL, SOCK, base, size, MEM_READWRITE)), p.table.lookup(rdma_key)
    if local is None or rdma is None or local.refs or rdma.refs:
        raise RuntimeError("hit_parts needs both entries cached")
    call = _median_us([_timed(lambda: None) for _ in range(n)])
    spi, inner = [], []
    for _ in range(n):
        spi.append(_timed(lambda: p.register_memory(SOCK, base, size, MEM_READWRITE)))
        p.deregister_memory(SOCK, local.value)
        inner.append(_timed(lambda: p._cache_hit(LOCAL, SOCK, base, size, MEM_READWRITE)))
    state = _median_us([_timed(ep.state) for _ in range(n)])
    lookup = _median_us([_timed(lambda: p.table.lookup(rdma_key)) for _ in range(n)]) - call
    mapped_hit = _median_us([_timed(lambda: rdma.mapped_at != mem.generation) for _ in range(n)]) - call
    mapped_full = _median_us([_timed(lambda: mem.mapped(base, size)) for _ in range(n)]) - call
    window, prepare, post, reap, syscall = [], [], [], [], []
    for _ in range(n):
        window.append(_timed(lambda: ep.windows.expose(rdma) or p.errors.append("expose failed")))
        ep.windows.revoke(rdma)
        prepare.append(_timed(lambda: ep.windows.prepare(rdma)))
        syscall.append(_timed(os.getppid))
    for _ in range(n):  # the window's floor: the bind's post (one system call, rxe binds inside it), its completion
        ready, rdma.next = rdma.next, None
        wr_id, qp = ep.next_wr, ep.qp
        ep.next_wr += 1
        qp.wr_start()
        qp.wr_id = wr_id
        qp.wr_bind_mw(ready.mw, ready.rkey, ready.info)
        post.append(_timed(qp.wr_complete))
        reap.append(_timed(lambda: ep.poll_send(wr_id) == 0 or p.errors.append("bind failed")))
        rdma.mw, rdma.rkey = ready.mw, ready.rkey
        ep.windows.revoke(rdma)
        ep.windows.prepare(rdma)
    return {"python_call_us": call, "spi_guard_us": max(_median_us(spi) - _median_us(inner), 0.0),
            "conn_state_us": state, "table_lookup_us": max(lookup, 0.0), "pages_mapped_us": max(mapped_hit, 0.0),
            "pages_mapped_full_us": max(mapped_full, 0.0), "window_us": _median_us(window),
            "bind_post_us": _median_us(post), "bind_completion_us": _median_us(reap),
            "syscall_us": _median_us(syscall),
            "prepare_ahead_us": statistics.mean(prepare) * 1e6}  # a mean: one in BATCH allocates BATCH windows


class _Hits:
    """Cache hits of one registration: registered once (the miss) and
    deregistered (now cached) when made; then each ``sample`` registers
    (timed: a hit) and deregisters (timed with it: the pair)."""

    def __init__(self, register: Callable[[], Any], deregister: Callable[[Any], Any]) -> None:
        self.register, self.deregister = register, deregister
        self.hits: list[float] = []
        self.pairs: list[float] = []
        ret = register()
        if ret.status != 0:
            raise RuntimeError(f"registration failed: {ret}")
        deregister(ret.value)

    def sample(self) -> None:
        t0 = time.perf_counter()
        ret = self.register()
        t1 = time.perf_counter()
        if ret.status != 0:
            raise RuntimeError(f"cache hit failed: {ret}")
        if self.deregister(ret.value).status != 0:
            raise RuntimeError("deregistration failed")
        t2 = time.perf_counter()
        self.hits.append(t1 - t0)
        self.pairs.append(t2 - t0)


def _iterations(size: int, quick: bool) -> int:
    """Enough messages for about 16 MiB (4 in --quick) at every size."""
    total = (4 if quick else 16) << 20
    return max(20, min(1500 if quick else 3000, total // size))


def provider_bandwidth(sizes: list[int], ops: tuple[str, ...], quick: bool = False) -> list[dict]:
    """WSPRdmaWrite / WSPRdmaRead of one ``size`` buffer, back to back, host 0
    to host 1's RDMA registration; bytes per second over the loop."""
    pair = Pair(-(-max(sizes) // PAGE) + 1, -(-max(sizes) // PAGE) + 1)
    rows = []
    try:
        a0, a1 = pair.mapped(0, max(sizes)), pair.mapped(1, max(sizes))
        p0, p1 = pair.p
        for size in sizes:
            h = p0.register_memory(SOCK, a0, size, MEM_READWRITE).value
            desc = p1.register_rdma_memory(SOCK, a1, size, MEM_READWRITE, 32).value.descriptor
            bufs = [WsaBufEx(size, a0, h)]
            n = _iterations(size, quick)
            for op in ops:
                call = p0.rdma_write if op == "write" else p0.rdma_read
                for _ in range(2):  # warm-up
                    call(SOCK, bufs, desc, 0)
                start = time.perf_counter()
                for _ in range(n):
                    ret = call(SOCK, bufs, desc, 0)
                    if ret.status != 0:
                        raise RuntimeError(f"rdma_{op} of {size} bytes failed: {ret} {pair.errors()}")
                secs = time.perf_counter() - start
                rows.append({"op": op, "size": size, "iterations": n, "seconds": secs,
                             "mib_per_s": size * n / secs / (1 << 20)})
            p1.deregister_rdma_memory(SOCK, desc)
            p0.deregister_memory(SOCK, h)
            p0.cache_callback(a0, size)
            p1.cache_callback(a1, size)
    finally:
        pair.close()
    return rows


def provider_latency(size: int = 8, reps: int = 500) -> dict:
    """The median time of one small WSPRdmaWrite (post to completion)."""
    pair = Pair(2, 2)
    try:
        a0, a1 = pair.mapped(0, PAGE), pair.mapped(1, PAGE)
        p0, p1 = pair.p
        h = p0.register_memory(SOCK, a0, PAGE, MEM_READWRITE).value
        desc = p1.register_rdma_memory(SOCK, a1, PAGE, MEM_READWRITE, 32).value.descriptor
        bufs = [WsaBufEx(size, a0, h)]
        for _ in range(10):
            p0.rdma_write(SOCK, bufs, desc, 0)
        samples = [_timed(lambda: p0.rdma_write(SOCK, bufs, desc, 0)) for _ in range(reps)]
        return {"size": size, "reps": reps, "median_us": _median_us(samples),
                "min_us": min(samples) * 1e6}
    finally:
        pair.close()


# --- perftest, loopback on the same device and address ------------------------

_PORT = [18515 + (os.getpid() % 1000) * 10]


def _perftest(tool: str, extra: list[str], parse: Callable[[str], dict], timeout: float = 300) -> dict:
    """Server and client of ``tool`` on this device's address (raw RC QPs,
    GID index from the lab); the client's figures."""
    dev = os.environ.get("SANSPI_LAB_DEVICE", "rxe0")
    gid = os.environ.get("SANSPI_LAB_GID", "1")
    addr = os.environ.get("SANSPI_LAB_LOCAL_ADDR", "127.0.0.1")
    _PORT[0] += 1
    common = [tool, "-d", dev, "-x", gid, "-F", "-p", str(_PORT[0]), *extra]
    server = subprocess.Popen(common, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            time.sleep(0.5)
            client = subprocess.run([*common, addr], capture_output=True, text=True, timeout=timeout)
            if client.returncode == 0 or time.monotonic() > deadline or server.poll() is not None:
                break
        if client.returncode != 0:
            raise RuntimeError(f"{' '.join(common)} {addr} failed: {client.stdout[-400:]} {client.stderr[-400:]}")
        server.wait(timeout=60)
        return parse(client.stdout)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def _parse_bw(out: str) -> dict:
    # " 1048576    50    32.46    31.59    0.000032": bytes, iterations, peak, average (MB = 2^20), Mpps
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", line)
        if m:
            return {"size": int(m[1]), "iterations": int(m[2]), "mib_per_s": float(m[4])}
    raise RuntimeError(f"no bandwidth line in perftest's output: {out[-400:]}")


def _parse_lat(out: str) -> dict:
    # bytes, iterations, t_min, t_max, t_typical, t_avg, ... (usec)
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", line)
        if m:
            return {"size": int(m[1]), "iterations": int(m[2]), "min_us": float(m[3]),
                    "typical_us": float(m[5])}
    raise RuntimeError(f"no latency line in ib_write_lat's output: {out[-400:]}")


def perftest_bandwidth(sizes: list[int], ops: tuple[str, ...], quick: bool = False) -> list[dict]:
    rows = []
    for size in sizes:
        for op in ops:
            got = _perftest(f"ib_{op}_bw", ["-s", str(size), "-n", str(_iterations(size, quick))], _parse_bw)
            rows.append({"op": op, **got})
    return rows


def perftest_latency(size: int = 8, reps: int = 500) -> dict:
    return _perftest("ib_write_lat", ["-s", str(size), "-n", str(reps)], _parse_lat)


def bandwidth(sizes: list[int], ops: tuple[str, ...] = ("write", "read"), quick: bool = False) -> dict:
    """Both sides of the bandwidth figure in one guest session."""
    return {"provider": provider_bandwidth(sizes, ops, quick), "perftest": perftest_bandwidth(sizes, ops, quick)}


def latency(reps: int = 500) -> dict:
    return {"provider": provider_latency(8, reps), "perftest": perftest_latency(8, reps)}
