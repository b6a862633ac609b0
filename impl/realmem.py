"""Real process memory as the application's address space (MEM-01..04).

The verbs provider registers the application's own pointers with
``ibv_reg_mr``, so the memory behind them must be real pages of this
process, and freeing and re-allocating an address must give *new* physical
pages there: that is what makes a stale registration observable (an MR
registered before the free still pins the old pages, MEM-01).

One reservation of ``pages`` pages is made once with ``PROT_NONE`` and kept
for the object's life, so no other mapping of the process (malloc, a
thread's stack, another provider's memory) can take a freed address while
the test means to re-allocate it. ``alloc`` maps fresh anonymous pages over
part of it with ``MAP_FIXED`` (zero-filled by the kernel); ``free`` maps a
fresh ``PROT_NONE`` anonymous range over them, which drops the process's
reference to the old pages exactly as ``munmap`` would while keeping the
address reserved.

``read``/``write`` are the harness's access to the memory, not SPI calls:
a bad range raises ``ValueError`` naming the problem.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap as _mmap
import os

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

PROT_NONE = 0
PROT_RW = _mmap.PROT_READ | _mmap.PROT_WRITE
MAP_PRIVATE = _mmap.MAP_PRIVATE
MAP_ANONYMOUS = _mmap.MAP_ANONYMOUS
MAP_FIXED = 0x10  # <sys/mman.h>; Python's mmap module does not export it
MAP_NORESERVE = 0x4000
MAP_FAILED = ctypes.c_void_p(-1).value


def _os_error(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


class RealMemory:
    """``pages`` pages of this process's memory at ``base`` (AddressSpace)."""

    page_size = 4096

    def __init__(self, pages: int = 8) -> None:
        if pages < 1:
            raise ValueError(f"an address space needs at least one page, not {pages}")
        self.pages = pages
        #: One byte a page, 1 where mapped: ``mapped`` asks C for the first
        #: unmapped page of a range (``bytearray.find``) instead of looping
        #: over the pages in Python, so a registration's MEM-02 check costs
        #: the same few microseconds at 4 KiB and at 64 MiB.
        self._mapped = bytearray(pages)
        size = pages * self.page_size
        addr = _libc.mmap(None, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        if addr in (None, MAP_FAILED):
            raise _os_error("mmap reservation")
        self.base: int = addr
        self._closed = False
        #: Changes whenever a page stops being mapped (``free``, ``close``),
        #: and only then: a range found mapped at one generation is still
        #: mapped while the generation is the same, so a caller that
        #: remembers it can skip ``mapped`` (a registration cache hit does).
        self.generation = 0

    # --- page mapping (MEM-01, MEM-04) -----------------------------------

    def _page_range(self, page: int, npages: int) -> None:
        if not (isinstance(page, int) and isinstance(npages, int)):
            raise ValueError(f"pages must be ints, not {page!r}, {npages!r}")
        if npages < 1 or page < 0 or page + npages > self.pages:
            raise ValueError(f"pages [{page}, {page + npages}) are not inside 0..{self.pages}")
        if self._closed:
            raise ValueError("this address space is closed")

    def _map_over(self, page: int, npages: int, prot: int) -> None:
        at = self.base + page * self.page_size
        flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
        if prot == PROT_NONE:
            flags |= MAP_NORESERVE
        got = _libc.mmap(at, npages * self.page_size, prot, flags, -1, 0)
        if got in (None, MAP_FAILED) or got != at:
            raise _os_error(f"mmap at page {page}")

    def alloc(self, page: int, npages: int) -> None:
        """Map fresh zero-filled pages; refuses pages already mapped (MEM-01)."""
        self._page_range(page, npages)
        if self._mapped.find(1, page, page + npages) >= 0:
            busy = [p for p in range(page, page + npages) if self._mapped[p]]
            raise ValueError(f"pages {busy} are already mapped")
        self._map_over(page, npages, PROT_RW)
        self._mapped[page:page + npages] = b"\x01" * npages

    def free(self, page: int, npages: int) -> None:
        """Unmap pages; the addresses stay reserved for a later ``alloc``."""
        self._page_range(page, npages)
        if self._mapped.find(0, page, page + npages) >= 0:
            idle = [p for p in range(page, page + npages) if not self._mapped[p]]
            raise ValueError(f"pages {idle} are not mapped")
        self._map_over(page, npages, PROT_NONE)
        self._mapped[page:page + npages] = bytes(npages)
        self.generation += 1

    # --- queries ------------------------------------------------------------

    def mapped(self, addr: int, length: int) -> bool:
        """MEM-02: is [addr, addr+length) inside and wholly on mapped pages?

        Not in the AddressSpace protocol: the verbs provider uses it to answer
        WSAEFAULT in the spec's check order (before WSAENOBUFS), without
        asking ``ibv_reg_mr``. A zero-length range is not mapped memory."""
        if not (isinstance(addr, int) and isinstance(length, int)) or length < 1 or self._closed:
            return False
        ps = self.page_size
        lo = addr - self.base
        hi = lo + length
        if lo < 0 or hi > self.pages * ps:
            return False
        # the first unmapped page of the range, searched in C (memchr)
        return self._mapped.find(0, lo // ps, (hi - 1) // ps + 1) < 0

    def _check(self, addr: int, length: int) -> None:
        if not (isinstance(addr, int) and isinstance(length, int)) or length < 0:
            raise ValueError(f"bad range {addr!r}+{length!r}")
        end = self.base + self.pages * self.page_size
        if addr < self.base or addr + length > end:
            raise ValueError(f"range [{addr:#x}, {addr + length:#x}) is outside [{self.base:#x}, {end:#x})")
        if length and not self.mapped(addr, length):
            raise ValueError(f"range [{addr:#x}, {addr + length:#x}) touches unmapped pages")

    def write(self, addr: int, data: bytes) -> None:
        data = bytes(data)
        self._check(addr, len(data))
        if data:
            ctypes.memmove(addr, data, len(data))

    def read(self, addr: int, length: int) -> bytes:
        self._check(addr, length)
        return ctypes.string_at(addr, length) if length else b""

    def close(self) -> None:
        """Give the reservation back. Only once nothing is registered on it:
        the verbs provider's ``shutdown`` comes first."""
        if not self._closed:
            self._closed = True
            self.generation += 1
            _libc.munmap(self.base, self.pages * self.page_size)

    def __repr__(self) -> str:
        return f"RealMemory(base={self.base:#x}, pages={self.pages}, mapped={[bool(b) for b in self._mapped]})"
