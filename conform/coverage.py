"""What a campaign must reach, and what it reached.

Two measures, both required by ``sanspi conform --require-coverage``:

* **Outcomes**: (transition, result, reason) triples, the reason being the
  clause and check that decided the step (model/reasons.py). The targets are
  every triple z3 proves possible for the provider's capabilities
  (proof/outcomes.py), so each refusal clause counts on its own even where
  several share a WSA code (DEREG-03 beside DEREG-01).
* **Behaviour**: classes of what the provider was made to do that status
  codes do not show: successful transfers that really changed the
  destination's bytes, for every buffer count and across page boundaries;
  every registration flag on the local and on the remote side; arguments on
  the boundaries of the SPI's integer types; cache hits and re-allocated
  pages then used; descriptors forged at every byte and of other lengths.
  A provider that answers 0 and moves nothing, or moves the wrong bytes,
  can hide in a campaign that never makes bytes move; these classes say the
  campaign did.

A class that cannot occur for a provider's configuration is not a target;
one that can but that this campaign cannot make is named in ``UNREACHABLE``
with the reason.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

import attrs

from sanspi.model import reasons as R
from sanspi.model.constants import MEM_READ, MEM_READWRITE, MEM_WRITE, OK, WSA_IO_PENDING, wsa_name
from sanspi.model.state import Config, State

Outcome = tuple[str, str, str]  # (transition, result, reason)

FLAG_NAMES = {MEM_READ: "MEM_READ", MEM_WRITE: "MEM_WRITE", MEM_READWRITE: "MEM_READWRITE"}
TRANSFERS = ("rdma_write", "rdma_read", "send")
DWORD = 2**32
POINTER = 2**64
#: How near a type's limit counts as "at" it: 2**32 - n for n up to this.
NEAR = 256


@attrs.define
class Coverage:
    outcomes: Counter = attrs.field(factory=Counter)
    behaviour: Counter = attrs.field(factory=Counter)

    def add(self, other: "Coverage") -> None:
        self.outcomes.update(other.outcomes)
        self.behaviour.update(other.behaviour)

    def reached(self) -> set[str]:
        return {outcome_label(o) for o in self.outcomes} | set(self.behaviour)


def outcome_label(o: Outcome) -> str:
    name, result, reason = o
    return f"{name} -> {result}" + (f" [{reason}]" if reason else "")


#: A refused RDMA target has two allowed outcomes (RDMA-08: WSAEINVAL at
#: call time, WSAECONNRESET from the peer) and a provider may always take the
#: same one, so coverage counts either for the reason.
OPEN_REFUSALS = frozenset({R.TARGET_UNKNOWN, R.TARGET_RANGE, R.TARGET_ACCESS})
REFUSED = "WSAEINVAL or WSAECONNRESET (RDMA-08)"


def outcome_key(name: str, status: int, why: int) -> Outcome:
    result = REFUSED if why in OPEN_REFUSALS and status != OK else wsa_name(status)
    return name, result, R.describe(why) if why else ""


# --- targets -----------------------------------------------------------------


def outcome_targets(cfg: Config) -> set[str]:
    """Every (transition, result, reason) the model can give for this
    provider's capabilities, proved possible by z3 on the proofs' bounded
    sizes, as labels."""
    from sanspi.proof.induction import PROOF_CONFIG
    from sanspi.proof.outcomes import possible_outcomes

    small = attrs.evolve(PROOF_CONFIG, has_cache=cfg.has_cache, has_rdma_read=cfg.has_rdma_read,
                         max_startups=min(cfg.max_startups, 2))
    return {outcome_label(outcome_key(name, code, why))
            for name, pairs in possible_outcomes(small).items() for code, why in pairs}


def behaviour_targets(cfg: Config) -> set[str]:
    """Every behaviour class that can occur for this configuration."""
    out: set[str] = set()
    ops = [op for op in TRANSFERS if op != "rdma_read" or cfg.has_rdma_read]
    for op in ops:
        for n in range(1, cfg.max_sge + 1):
            out.add(f"moved: {op} with {n} buffer(s) changed the destination's bytes")
        out.add(f"moved: {op} with a local buffer crossing a page boundary")
        out.add(f"moved: {op} into or from a {'receive' if op == 'send' else 'target'} crossing a page boundary")
    for op, granted in (("rdma_write", (MEM_READ, MEM_READWRITE)), ("rdma_read", (MEM_WRITE, MEM_READWRITE)),
                        ("send", (MEM_READ, MEM_READWRITE)), ("post_recv", (MEM_WRITE, MEM_READWRITE))):
        if op in ops or op == "post_recv":
            for flags, name in FLAG_NAMES.items():
                out.add(f"flags: {op} from a local {name} registration "
                        f"{'succeeded' if flags in granted else 'was refused (ACC-03)'}")
    for op, granted in (("rdma_write", (MEM_WRITE, MEM_READWRITE)), ("rdma_read", (MEM_READ, MEM_READWRITE))):
        if op in ops:
            for flags, name in FLAG_NAMES.items():
                out.add(f"flags: {op} to a remote {name} registration "
                        f"{'succeeded' if flags in granted else 'was refused (ACC-02)'}")
    for arg, edges in BOUNDARIES.items():
        if arg.startswith("rdma_read") and not cfg.has_rdma_read:
            continue
        if arg.startswith("cache_callback") and not cfg.has_cache:
            continue
        out.update(f"bound: {arg} {edge}" for edge in edges)
    out.update(f"version: {v}" for v in VERSION_CLASSES)
    for k in range(cfg.descriptor_size):
        out.add(f"descriptor: forged at byte {k}, refused")
    out.update(f"descriptor: {what}, refused" for what in RESIZED)
    if cfg.has_cache:
        out.add("cache: a local buffer served from the cache (CACHE-02), then used in a transfer that moved bytes")
        out.add("cache: an RDMA buffer re-exposed from the cache (CACHE-03), then used by the peer's transfer "
                "that moved bytes")
    out.add("reuse: pages freed and mapped again at the same address, registered again, and used in a transfer "
            "that moved bytes")
    return out


#: Why a target this campaign cannot reach stays unreached.
UNREACHABLE: dict[str, str] = {
    "startup_ex -> WSASYSNOTREADY [START-02: the SAN is not ready]":
        "campaigns run on a provider whose device is up (START-02 is a model test)",
    "get_extension -> WSAEOPNOTSUPP [EXT-03: optional function not supplied]":
        "only for a provider without WSPRdmaRead or the cache callback",
}


def uncovered(coverage: Coverage, targets: Iterable[str], skip: Iterable[str] = ()) -> list[str]:
    """The targets the campaign never reached (but those in ``skip``)."""
    reached, skip = coverage.reached(), set(skip)
    return sorted(t for t in targets if t not in reached and t not in skip)


# --- integer boundaries ------------------------------------------------------

#: The SPI's integer arguments and the edges each must be tried at. DWORD
#: arguments (offsets, lengths, counts) are 32-bit unsigned in C: a provider
#: computing ``offset + length`` in 32 bits wraps, one storing a length in a
#: signed int sees 2**31 as negative. Pointers are 64 bits: an address near
#: 2**64 wraps ``addr + length``, and one 2**32 above a mapped address
#: aliases it in a provider that truncates pointers to 32 bits.
BOUNDARIES: dict[str, tuple[str, ...]] = {
    "rdma_write offset": ("0", "at the exact end", "one past the end", "near 2**31", "near 2**32",
                          "with offset + length past 2**32"),
    "rdma_read offset": ("0", "at the exact end", "one past the end", "near 2**31", "near 2**32",
                         "with offset + length past 2**32"),
    "buffer length": ("0", "at the exact end", "one past the end", "near 2**31", "near 2**32"),
    "buffer address": ("near 2**64", "2**32 above a mapped address"),
    "register length": ("0", "at the exact end", "one past the end", "near 2**31", "near 2**32"),
    "register address": ("near 2**64", "2**32 above a mapped address"),
    "descriptor block length": ("0", "one short", "exact", "near 2**32"),
    "cache_callback size": ("0", "near 2**32", "past 2**32"),
    "cache_callback address": ("near 2**64",),
    "send length": ("at the exact end of the receive", "one past the end of the receive"),
}

VERSION_CLASSES = ("2.2 asked", "2.0 or 2.1 asked (minor below)", "1.x asked (major below)",
                   "2.3 or above asked (minor above)", "3.0 or above asked (major above)")

#: Descriptors of other lengths (Ref("resized", rid, at=delta)).
RESIZED = ("one byte short", "one byte long", "empty", "much longer")


def _near(x: Any, limit: int) -> bool:
    return isinstance(x, int) and limit - NEAR <= x <= limit + NEAR


def _edge_of_length(start: int, length: int, end: int) -> str | None:
    """"at the exact end" / "one past the end" of [start, start+length) against ``end``."""
    if start + length == end:
        return "at the exact end"
    if start + length == end + 1:
        return "one past the end"
    return None


def integer_edges(arg: str, value: Any, mapped: list[tuple[int, int]] | None = None, base: int = 0) -> list[str]:
    """The DWORD or pointer edges ``value`` stands on, as BOUNDARIES names
    them. Addresses are the model's; ``base`` (the host's page 0) makes them
    the pointers the provider saw."""
    out = []
    if not isinstance(value, int):
        return out
    if value == 0 and arg not in ("buffer address", "register address", "cache_callback address"):
        out.append("0")
    if "address" in arg:
        if POINTER - NEAR <= base + value < POINTER + NEAR:
            out.append("near 2**64")
        if mapped and any(a + DWORD <= value < a + n + DWORD for a, n in mapped):
            out.append("2**32 above a mapped address")
        return out
    if _near(value, 2**31):
        out.append("near 2**31")
    if _near(value, DWORD):
        out.append("near 2**32" if value < DWORD or arg != "cache_callback size" else "past 2**32")
    elif isinstance(value, int) and value > DWORD and arg == "cache_callback size":
        out.append("past 2**32")
    return out


# --- classifying one step -----------------------------------------------------


@attrs.frozen
class StepFacts:
    """What the World knows of one step, for classifying it."""

    name: str
    wargs: dict  # the World's arguments (Refs included)
    margs: Any  # the model's argument record
    pre: State
    status: int
    why: int
    result: Any
    post: State


def _regs(state: State, host: int) -> list:
    return [sl for sl in state.hosts[host].slots if sl.used]


def _reg_of(state: State, host: int, kind: int, sock: int, rid: int):
    for sl in state.hosts[host].slots:
        if sl.used and sl.refs > 0 and sl.kind == kind and sl.sock == sock and sl.rid == rid:
            return sl
    return None


def _mapped_runs(state: State, host: int, ps: int) -> list[tuple[int, int]]:
    runs, start = [], None
    mapped = state.hosts[host].mapped
    for p, m in enumerate(tuple(mapped) + (False,)):
        if m and start is None:
            start = p
        elif not m and start is not None:
            runs.append((start * ps, (p - start) * ps))
            start = None
    return runs


def _crosses(addr: int, length: int, ps: int) -> bool:
    return length > 0 and addr // ps != (addr + length - 1) // ps


def classify(cfg: Config, f: StepFacts, history: "History") -> list[str]:
    """The behaviour classes one step belongs to."""
    out: list[str] = []
    ps, name, a = cfg.page_size, f.name, f.margs
    if name == "startup_ex":
        v = (a.major, a.minor)
        lo, hi = cfg.lowest_version, cfg.highest_version
        if v == hi:
            out.append("version: 2.2 asked")
        elif a.major == lo[0] and v < lo:
            out.append("version: 2.0 or 2.1 asked (minor below)")
        elif a.major < lo[0]:
            out.append("version: 1.x asked (major below)")
        elif a.major == hi[0] and v > hi:
            out.append("version: 2.3 or above asked (minor above)")
        elif a.major > hi[0]:
            out.append("version: 3.0 or above asked (major above)")
    if name in ("register_memory", "register_rdma_memory"):
        mapped = _mapped_runs(f.pre, a.host, ps)
        for e in integer_edges("register length", a.length):
            out.append(f"bound: register length {e}")
        for e in integer_edges("register address", a.addr, mapped, history.bases[a.host]):
            out.append(f"bound: register address {e}")
        for start, n in mapped:
            if start <= a.addr < start + n and isinstance(a.length, int) and a.length > 0:
                e = _edge_of_length(a.addr, a.length, start + n)
                if e:
                    out.append(f"bound: register length {e}")
        if name == "register_rdma_memory":
            d = a.desc_len
            if d == 0:
                out.append("bound: descriptor block length 0")
            elif d == cfg.descriptor_size - 1:
                out.append("bound: descriptor block length one short")
            elif d == cfg.descriptor_size:
                out.append("bound: descriptor block length exact")
            elif _near(d, DWORD):
                out.append("bound: descriptor block length near 2**32")
    if name == "cache_callback":
        for e in integer_edges("cache_callback size", a.size):
            out.append(f"bound: cache_callback size {e}")
        for e in integer_edges("cache_callback address", a.addr, None, history.bases[a.host]):
            out.append(f"bound: cache_callback address {e}")
    if name in ("rdma_write", "rdma_read", "send", "post_recv"):
        out += _classify_transfer(cfg, f, history)
    if name in ("rdma_write", "rdma_read", "deregister_rdma_memory"):
        ref = f.wargs.get("desc")
        if ref is not None and f.status != OK and f.why in (R.TARGET_UNKNOWN, R.RDEREG_NOT_LIVE):
            if ref.how == "forged":
                out.append(f"descriptor: forged at byte {ref.at % cfg.descriptor_size}, refused")
            elif ref.how == "resized":
                out.append(f"descriptor: {resized_name(ref.at)}, refused")
    return out


def resized_name(delta: int) -> str:
    return {-1: "one byte short", 1: "one byte long"}.get(delta, "empty" if delta < 0 else "much longer")


def _classify_transfer(cfg: Config, f: StepFacts, history: "History") -> list[str]:
    out: list[str] = []
    ps, name, a = cfg.page_size, f.name, f.margs
    host = a.host
    # (length, addr, handle) of each buffer, as WSABUFEX orders them
    sges = [(s.length, s.addr, s.handle) for s in (a.sges if name != "post_recv" else (a,))]
    mapped = _mapped_runs(f.pre, host, ps)
    ok = f.status in (OK, WSA_IO_PENDING)
    # integer edges of each buffer, and where it ends against its registration
    for length, addr, handle in sges:
        for e in integer_edges("buffer length", length):
            out.append(f"bound: buffer length {e}")
        for e in integer_edges("buffer address", addr, mapped, history.bases[host]):
            out.append(f"bound: buffer address {e}")
        reg = _reg_of(f.pre, host, 1, a.sock, handle)
        if reg is not None and isinstance(length, int) and length > 0 and reg.addr <= addr < reg.addr + reg.length:
            e = _edge_of_length(addr, length, reg.addr + reg.length)
            if e:
                out.append(f"bound: buffer length {e}")
    local_flags = [reg.flags for length, addr, handle in sges
                   if (reg := _reg_of(f.pre, host, 1, a.sock, handle)) is not None]
    if ok and f.why in (R.WRITTEN, R.READ, R.DELIVERED, R.POSTED):
        out += [f"flags: {name} from a local {FLAG_NAMES[fl]} registration succeeded" for fl in set(local_flags)]
    if f.why == R.BUFFER_ACCESS:
        need = MEM_READ if name in ("rdma_write", "send") else MEM_WRITE
        refused = [fl for fl in local_flags if fl != need and fl != MEM_READWRITE]
        if refused:
            out.append(f"flags: {name} from a local {FLAG_NAMES[refused[0]]} registration was refused (ACC-03)")
    if name in ("rdma_write", "rdma_read"):
        total = sum(n for n, _, _ in sges)
        target = _reg_of(f.pre, 1 - host, 2, a.sock, a.desc)
        off = a.offset
        for e in integer_edges(f"{name} offset", off):
            out.append(f"bound: {name} offset {e}")
        if isinstance(off, int) and off < DWORD <= off + total:
            out.append(f"bound: {name} offset with offset + length past 2**32")
        if target is not None:
            if isinstance(off, int):
                e = _edge_of_length(off, total, target.length)
                if e:
                    out.append(f"bound: {name} offset {e}")
            if f.why in (R.WRITTEN, R.READ):
                out.append(f"flags: {name} to a remote {FLAG_NAMES[target.flags]} registration succeeded")
            elif f.why == R.TARGET_ACCESS:
                out.append(f"flags: {name} to a remote {FLAG_NAMES[target.flags]} registration was refused (ACC-02)")
    if name == "send":
        pep = f.pre.hosts[1 - host].eps[a.sock] if 0 <= a.sock < cfg.sockets else None
        total = sum(n for n, _, _ in sges)
        if pep is not None and pep.recv_len:
            if total == pep.recv_len:
                out.append("bound: send length at the exact end of the receive")
            elif total == pep.recv_len + 1:
                out.append("bound: send length one past the end of the receive")
    if f.status == OK and name in TRANSFERS:
        dest = host if name == "rdma_read" else 1 - host
        if f.pre.hosts[dest].mem != f.post.hosts[dest].mem:
            out.append(f"moved: {name} with {len(sges)} buffer(s) changed the destination's bytes")
            if any(_crosses(addr, n, ps) for n, addr, _ in sges):
                out.append(f"moved: {name} with a local buffer crossing a page boundary")
            total = sum(n for n, _, _ in sges)
            if name == "send":
                pep = f.pre.hosts[1 - host].eps[a.sock]
                far = (pep.recv_addr, total)
            else:
                target = _reg_of(f.pre, 1 - host, 2, a.sock, a.desc)
                far = (target.addr + a.offset, total)
            if _crosses(*far, ps):
                out.append(f"moved: {name} into or from a {'receive' if name == 'send' else 'target'} "
                           f"crossing a page boundary")
            handles = {h for _, _, h in sges}
            if handles & history.cache_served:
                out.append("cache: a local buffer served from the cache (CACHE-02), then used in a transfer "
                           "that moved bytes")
            if name != "send" and a.desc in history.reexposed:
                out.append("cache: an RDMA buffer re-exposed from the cache (CACHE-03), then used by the peer's "
                           "transfer that moved bytes")
            if handles & history.reborn[host] or (name != "send" and a.desc in history.reborn[1 - host]):
                out.append("reuse: pages freed and mapped again at the same address, registered again, and used "
                           "in a transfer that moved bytes")
    return out


@attrs.define
class History:
    """What earlier steps of the example did that a later class depends on."""

    cache_served: set = attrs.field(factory=set)  # local handles served from the cache
    reexposed: set = attrs.field(factory=set)  # descriptor ids re-exposed from the cache
    freed_pages: list = attrs.field(factory=lambda: [set(), set()])  # per host: pages freed at least once
    reborn: list = attrs.field(factory=lambda: [set(), set()])  # per host: ids registered on re-mapped pages
    bases: tuple = (0, 0)  # each host's address of page 0 (the model's address 0)

    def note(self, cfg: Config, f: StepFacts) -> None:
        a = f.margs
        if f.name == "free":
            self.freed_pages[a.host].update(range(a.page, a.page + a.npages))
        if f.name in ("register_memory", "register_rdma_memory") and f.status == OK:
            rid = f.result
            if f.why == R.REG_CACHE_HIT:
                self.cache_served.add(rid)
            if f.why == R.RREG_REEXPOSED:
                self.reexposed.add(rid)
            ps = cfg.page_size
            pages = range(a.addr // ps, (a.addr + a.length - 1) // ps + 1)
            if f.why in (R.REG_NEW, R.RREG_NEW) and any(p in self.freed_pages[a.host] for p in pages):
                self.reborn[a.host].add(rid)

