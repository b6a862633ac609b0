"""The model's state: two hosts, each a provider instance with its address
space, registration table and connection endpoints (spec/sockets.md).

Every field is an int, a bool, a fixed-length tuple or a memory, so the same
classes hold concrete values when the model runs and z3 terms when it is
proved. Nothing here is a set or a dict: a registration table is a tuple of
``Slot``s of fixed length ``Config.slots``.
"""

from __future__ import annotations

from typing import Any

import attrs

from sanspi.model.constants import CLOSED, HIGHEST_VERSION, LOWEST_VERSION

HOSTS = 2


@attrs.frozen
class Config:
    """Sizes and capabilities: the axes a provider is configured along.

    A provider under test is described by the same fields (its capabilities
    and limits), so the model predicts for that provider (EXT-03, CACHE-01,
    REG-09, RREG-03).
    """

    pages: int = 8  # pages in each host's address space (MEM-01)
    page_size: int = 4096
    slots: int = 8  # registrations (live or cached) a host's provider holds (REG-09)
    sockets: int = 2  # connections between the two hosts (SOCK-01)
    max_sge: int = 4  # WSABUFEX entries one call may carry (RDMA-03)
    has_rdma_read: bool = True  # WSPRdmaRead supplied (EXT-03)
    has_cache: bool = True  # registration cache + its callback supplied (CACHE-01)
    descriptor_size: int = 32  # bytes of an RDMA descriptor (RREG-03)
    max_startups: int = 4  # WSPStartupEx calls a provider accepts (START-04)
    ready: bool = True  # the SAN is up: the device opens (START-02)
    lowest_version: tuple[int, int] = LOWEST_VERSION
    highest_version: tuple[int, int] = HIGHEST_VERSION

    @property
    def memsize(self) -> int:
        return self.pages * self.page_size


@attrs.frozen
class Slot:
    """One registration, live (refs > 0) or cached (refs == 0 and used).

    ``rid`` is its handle (KIND_LOCAL) or descriptor identity (KIND_RDMA);
    ids come from one counter shared by both hosts, so they never repeat.
    An unused slot is all zeros.
    """

    used: Any = False
    kind: Any = 0
    sock: Any = 0
    addr: Any = 0
    length: Any = 0
    flags: Any = 0
    refs: Any = 0
    rid: Any = 0


@attrs.frozen
class Endpoint:
    """One host's end of a connection and its (single) posted receive."""

    conn: Any = CLOSED
    recv: Any = 0  # RECV_IDLE / RECV_POSTED / RECV_DONE
    recv_handle: Any = 0
    recv_addr: Any = 0
    recv_len: Any = 0
    recv_status: Any = 0
    recv_bytes: Any = 0


@attrs.frozen
class Host:
    startups: Any
    mapped: tuple  # one bool a page (MEM-01)
    slots: tuple  # Config.slots Slots
    eps: tuple  # Config.sockets Endpoints
    # bytes of the whole address space (concrete) or a z3 array; shown by
    # size and digest, never in full
    mem: Any = attrs.field(repr=lambda m: f"<{len(m)} bytes>" if isinstance(m, bytes) else "<memory>")


@attrs.frozen
class State:
    hosts: tuple  # HOSTS Hosts
    next_id: Any  # the next handle / descriptor id to hand out (REG-07)


def empty_slot() -> Slot:
    return Slot()


def closed_endpoint() -> Endpoint:
    return Endpoint()


def init_state(cfg: Config) -> State:
    """Nothing started, nothing mapped, nothing registered, nothing connected."""
    host = Host(
        startups=0,
        mapped=(False,) * cfg.pages,
        slots=(empty_slot(),) * cfg.slots,
        eps=(closed_endpoint(),) * cfg.sockets,
        mem=bytes(cfg.memsize),
    )
    return State(hosts=(host,) * HOSTS, next_id=1)
