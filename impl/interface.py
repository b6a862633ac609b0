"""The provider interface: what a SAN provider implements to be checked by
sanspi (spec/provider-interface.md).

It mirrors the SPI's own shapes. A call returns ``Ret(status, value)``:
``status`` is what the SPI reports (0, or the WSA code that ``*lpErrno``
receives; WSA_IO_PENDING for a receive that is posted), ``value`` what the
function hands back (a handle, a descriptor, a byte count, a version word).
Buffers are WSABUFEX triples of (length, address, handle). Addresses are the
application's own pointers, inside the host's ``AddressSpace``.

A provider never raises for bad input: every argument the spec names gets
its WSA code (spec/README.md, "Bad input"). An exception out of a provider is
reported by the oracle as a divergence.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol, runtime_checkable

import attrs


class Ret(NamedTuple):
    status: int  # 0, WSA_IO_PENDING, or a WSA error code
    value: Any = None


class WsaBufEx(NamedTuple):
    """WSABUFEX: ``len``, ``buf`` and the ``handle`` WSPRegisterMemory returned."""

    len: int
    buf: int
    handle: Any


@attrs.frozen
class RdmaRegistration:
    """What WSPRegisterRdmaMemory writes back: the descriptor (on success) and
    ``*lpdwDescriptorLength`` (the size stored, or the size needed)."""

    descriptor: bytes | None
    length: int


@attrs.frozen
class Capabilities:
    """The provider's side of the model's Config (spec/README.md, bounds)."""

    has_rdma_read: bool = True
    has_cache: bool = True
    slots: int = 8  # registrations, live or cached, the provider holds
    max_sge: int = 4
    descriptor_size: int = 32
    max_startups: int = 4


@runtime_checkable
class AddressSpace(Protocol):
    """The application's memory on one host: page-granular, zero-filled on
    mapping, and re-mappable at an address it freed (MEM-01..04). ``base`` is
    the address of page 0; the model's address ``a`` is ``base + a`` here."""

    base: int
    page_size: int
    pages: int

    def alloc(self, page: int, npages: int) -> None: ...
    def free(self, page: int, npages: int) -> None: ...
    def write(self, addr: int, data: bytes) -> None: ...
    def read(self, addr: int, length: int) -> bytes: ...


@runtime_checkable
class Provider(Protocol):
    """One host's SAN provider instance, with the application memory it serves."""

    name: str
    memory: AddressSpace
    capabilities: Capabilities

    # WSPStartupEx (START-*)
    def startup_ex(self, version: int, wsp_data: bool = True, proc_table: bool = True) -> Ret: ...

    # WSPIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER) (EXT-*): value is the function
    def get_extension_function(self, guid: bytes, out_len: int = 8) -> Ret: ...

    # Sockets (SOCK-*): the switch's connect and close, with a real exchange
    # between the two hosts. ``listen`` returns a token the peer's ``connect``
    # takes; ``accept`` completes the listening side (it may block until the
    # peer connects, so the oracle calls it from another thread).
    def listen(self, s: int) -> bytes: ...
    def accept(self, s: int) -> Ret: ...
    def connect(self, s: int, token: bytes) -> Ret: ...
    def close(self, s: int) -> Ret: ...

    # The extension functions (what get_extension_function hands out)
    def register_memory(self, s: int, buf: int, length: int, flags: int) -> Ret: ...
    def deregister_memory(self, s: int, handle: Any) -> Ret: ...
    def register_rdma_memory(self, s: int, buf: int, length: int, flags: int, descriptor_length: int) -> Ret: ...
    def deregister_rdma_memory(self, s: int, descriptor: bytes) -> Ret: ...
    def cache_callback(self, addr: int, size: int) -> Ret: ...
    def rdma_write(self, s: int, buffers: list[WsaBufEx], target: bytes, offset: int) -> Ret: ...
    def rdma_read(self, s: int, buffers: list[WsaBufEx], target: bytes, offset: int) -> Ret: ...

    # WSPSend / WSPRecv with registered buffers (XFER-*)
    def send(self, s: int, buffers: list[WsaBufEx]) -> Ret: ...
    def recv(self, s: int, buffer: WsaBufEx) -> Ret: ...
    def recv_done(self, s: int) -> Ret: ...  # the posted receive's (status, bytes)

    def shutdown(self) -> None: ...  # release every resource (idempotent)


#: What ``sanspi conform --provider MODULE:FACTORY``, the ``sanspi_conformance``
#: fixture and ``sanspi.testing.connected_pair`` take: a callable with no
#: arguments returning a fresh pair (host 0, host 1) that can connect to each
#: other (spec/provider-interface.md, "Running the oracle on a provider").
ProviderFactory = Callable[[], tuple[Provider, Provider]]
