"""Seeded-bug variants of the verbs provider (impl/verbs.py): the oracle's
check on real RDMA.

Each mutant is a small subclass of VerbsProvider (or of one of its resource
classes, impl/verbs_*.py, swapped in) that breaks one clause the way a
verbs provider gets it wrong, chosen where rxe itself does not refuse
the operation: the bug shows only as a result, a byte or a state the model
says differently. ``sanspi conform --mutants --provider rxe`` hunts them (in
the lab when this host has no RDMA device) and prints the kill table;
``tests/rxe/test_verbs_mutants.py`` fails on a survivor, and on a control
run of the unmutated provider that diverges within the same budget.

Hunting needs an rxe device (the lab's guest); the host leg's tests do
not import this module.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import attrs

from sanspi.conform.mutants import MUTANT_SEEDS, hunt
from sanspi.impl.interface import Ret
from sanspi.impl.verbs import VerbsProvider
from sanspi.impl.verbs_device import Device
from sanspi.impl.verbs_endpoint import Endpoint
from sanspi.impl.verbs_table import RegistrationTable
from sanspi.impl.verbs_windows import Windows
from sanspi.spi import MEM_READ, MEM_READWRITE, MEM_WRITE, OK, WSAECONNRESET, WSAEINVAL

#: The budget for one verbs mutant, per seed: a lockstep step on rxe under
#: emulation costs about 30 ms (the software provider's about 1 ms), so the
#: verbs mutants must die in far fewer examples than the software ones. The
#: unmutated provider is run on the same budget as a control.
VERBS_MUTANT_EXAMPLES = 40
VERBS_MUTANT_STEPS = 30
VERBS_MUTANT_PAGES = 4
#: A small registration table, as for the software provider's campaigns
#: (conform.providers.SIM_CAPABILITIES): a short run then reaches a full
#: table and a full cache, where a leaked or merged entry shows (REG-09).
VERBS_MUTANT_SLOTS = 4


@attrs.frozen
class VerbsMutant:
    name: str
    clause: str
    what: str
    cls: type[VerbsProvider]

    def pair(self, pages: int = VERBS_MUTANT_PAGES) -> tuple[VerbsProvider, VerbsProvider]:
        """Both hosts on this machine's one rxe device (the loopback topology)."""
        return (self.cls(pages=pages, slots=VERBS_MUTANT_SLOTS),
                self.cls(pages=pages, slots=VERBS_MUTANT_SLOTS))


def provider(name: str, **attrs_: Any) -> type[VerbsProvider]:
    """A VerbsProvider subclass with some methods, or resource classes,
    replaced."""
    return type(name, (VerbsProvider,), dict(attrs_))


def component(base: type, **methods: Callable) -> type:
    """A subclass of one of the provider's resource classes (impl/verbs_*.py)
    with some methods replaced."""
    return type(f"Mutant{base.__name__}", (base,), dict(methods))


# --- ACC-02: remote access wider than the flags ----------------------------------


def _mr_widened(self: Device, addr: int, length: int, access: int) -> Any:
    """An RDMA registration's MR (the one asked with MW_BIND) gets local
    write whatever the flags, as the widened window below needs to bind."""
    import pyverbs.enums as e

    if access & e.IBV_ACCESS_MW_BIND:
        access |= e.IBV_ACCESS_LOCAL_WRITE
    return Device.reg_mr(self, addr, length, access)


def _prepare_widened(self: Windows, r: Any) -> bool:
    """The window is bound, and the descriptor sealed, as MEM_READWRITE:
    the peer's requester and rxe then both let through what the flags forbid."""
    asked = r.flags
    r.flags = MEM_READWRITE
    try:
        return Windows.prepare(self, r)
    finally:
        r.flags = asked


# --- RDEREG-02: the window outlives the deregistration -------------------------------


def _revoke_nothing(self: Windows, r: Any) -> None:
    """No local invalidate: the window stays bound to the cached MR, so the
    peer's descriptor keeps working after WSPDeregisterRdmaMemory."""


# --- CACHE-04: the callback keeps the MR --------------------------------------------------


def _callback_keeps_mr(self: VerbsProvider, addr: int, size: int) -> Ret:
    """The callback answers 0 for a range only cached entries touch, and
    deregisters nothing: the MR still pins the old pages, so a later cache hit
    serves memory the application freed and mapped anew."""
    if isinstance(addr, int) and isinstance(size, int) and self.capabilities.has_cache:
        hits = self.table.overlapping(addr, size)
        if hits and all(r.refs == 0 for r in hits):
            return Ret(OK, 0)
    return VerbsProvider.cache_callback(self, addr, size)


# --- CONN-01: a failed completion leaves the endpoint usable ---------------------------


def _fail_nothing(self: Endpoint) -> None:
    """A completion error (here or seen in the QP's state) never puts the
    endpoint in the error state, nor tells the peer."""


# --- RDMA-08: a posted failure reported as a call-time refusal -------------------------


def _refusal_code(fn: Callable) -> Callable:
    def wrapped(self: VerbsProvider, s: Any, buffers: Any, target: Any, offset: Any) -> Ret:
        ret = fn(self, s, buffers, target, offset)
        return Ret(WSAEINVAL, 0) if ret.status == WSAECONNRESET else ret

    wrapped.__name__ = fn.__name__
    return wrapped


# --- REG-05, CACHE-02: the table keyed without the flags -------------------------------


def _lookup_any_flags(self: RegistrationTable, key: tuple) -> Any:
    """An entry of the same socket, address and length matches whatever its
    flags (a table keyed by range alone, as many registration caches are): a
    read-only registration's MR and handle serve one asked for writing."""
    *rest, asked = key
    for flags in (asked, MEM_READ, MEM_WRITE, MEM_READWRITE):
        hit = RegistrationTable.lookup(self, (*rest, flags))
        if hit is not None:
            return hit
    return None


# --- RDEREG-03: one deregistration revokes every reference ------------------------------


def _dereg_rdma_every_reference(self: VerbsProvider, s: Any, descriptor: Any) -> Ret:
    """The window is invalidated on the first deregistration whatever the
    count (a provider that keeps no reference count per RDMA registration):
    the peer loses a target the application still holds."""
    ret = VerbsProvider.deregister_rdma_memory(self, s, descriptor)
    if ret.status == OK:
        while VerbsProvider.deregister_rdma_memory(self, s, descriptor).status == OK:
            pass
    return ret


VERBS_MUTANTS: tuple[VerbsMutant, ...] = (
    VerbsMutant("verbs-window-kept-after-dereg", "RDEREG-02", "deregistration does not invalidate the "
                "memory window: the old descriptor still works",
                provider("WindowKept", Windows=component(Windows, revoke=_revoke_nothing))),
    VerbsMutant("verbs-callback-keeps-mr", "CACHE-04", "the cache callback answers 0 but deregisters no MR: "
                "stale hit after free and re-allocation", provider("CallbackKeepsMr",
                                                                    cache_callback=_callback_keeps_mr)),
    VerbsMutant("verbs-error-state-not-entered", "CONN-01", "a completion error leaves the endpoint "
                "connected (and the peer untold)",
                provider("NoErrorState", Endpoint=component(Endpoint, fail=_fail_nothing))),
    VerbsMutant("verbs-failed-completion-as-refusal", "RDMA-08", "a transfer that rxe failed (connection now "
                "down) is reported as WSAEINVAL, the call-time refusal", provider(
                    "FailureAsRefusal", rdma_write=_refusal_code(VerbsProvider.rdma_write),
                    rdma_read=_refusal_code(VerbsProvider.rdma_read))),
    VerbsMutant("verbs-table-ignores-flags", "REG-05", "a registration of the same buffer with other flags "
                "matches the live or cached entry: its MR and handle are reused", provider(
                    "TableIgnoresFlags", Table=component(RegistrationTable, lookup=_lookup_any_flags))),
    # these two need conform.machine's transfer_that_fits: a live target that
    # does not grant the access, and one left with one of two references
    VerbsMutant("verbs-dereg-revokes-every-reference", "RDEREG-03", "one WSPDeregisterRdmaMemory drops every "
                "reference: the window goes while the buffer is still registered", provider(
                    "DeregRevokesAll", deregister_rdma_memory=_dereg_rdma_every_reference)),
    VerbsMutant("verbs-remote-access-widened", "ACC-02", "an RDMA registration's window and descriptor "
                "grant remote read and write whatever the flags", provider(
                    "WidenedAccess", Device=component(Device, reg_mr=_mr_widened),
                    Windows=component(Windows, prepare=_prepare_widened))),
)

BY_NAME = {m.name: m for m in VERBS_MUTANTS}

#: The unmutated provider, hunted on the same budget: it must survive with
#: no divergence, or a kill above may be the rig's fault, not the mutant's.
CONTROL = VerbsMutant("verbs-unmutated (control)", "-", "the verbs provider as it is", VerbsProvider)


@attrs.frozen
class VerbsHunt:
    """A hunt's result: the campaign's, and what the providers recorded as
    exceptions they swallowed (a mutant whose override broke would answer
    WSAEINVAL and look killed; ``errors`` shows it)."""

    result: Any  # CampaignResult (of the last seed hunted)
    errors: tuple[str, ...]
    examples: int  # examples run, every seed hunted together
    seconds: float

    @property
    def killed(self) -> bool:
        return not self.result.ok


def hunt_verbs(mutant: VerbsMutant, pages: int = VERBS_MUTANT_PAGES, steps: int = VERBS_MUTANT_STEPS,
               seeds=MUTANT_SEEDS, examples: int = VERBS_MUTANT_EXAMPLES, progress=None) -> VerbsHunt:
    """conform.mutants.hunt over ``mutant``'s pair of verbs providers."""
    made: list[VerbsProvider] = []

    def factory() -> tuple[VerbsProvider, VerbsProvider]:
        pair = mutant.pair(pages)
        made.extend(pair)
        return pair

    start = time.perf_counter()
    probe = VerbsProvider(pages=pages, slots=VERBS_MUTANT_SLOTS)
    caps = probe.capabilities
    probe.shutdown()
    try:
        result = hunt(mutant, pages, steps, seeds, progress, examples=examples, capabilities=caps,
                      factory=factory)
    finally:
        for p in made:
            p.shutdown()  # idempotent: the machine's teardown has done most
    return VerbsHunt(result, tuple(e for p in made for e in p.errors), len(made) // 2,
                     time.perf_counter() - start)
