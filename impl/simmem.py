"""An application address space in Python: one bytearray a page.

Freeing a page drops its bytearray from the page table and mapping it again
makes a new one, so whoever still holds the old bytearray (a registration
that pinned it) holds memory the application no longer sees: the same
effect as a NIC registration that pins physical pages after ``munmap`` and
``mmap`` at the same address. That is what lets stale-cache bugs show.
"""

from __future__ import annotations

#: Where page 0 lives: an address of the usual user-space shape, so pointer
#: arithmetic in a provider is exercised, never address 0.
DEFAULT_BASE = 0x7F3A_0000_0000


class SimMemory:
    def __init__(self, pages: int = 8, page_size: int = 4096, base: int = DEFAULT_BASE):
        self.base, self.page_size, self.pages = base, page_size, pages
        self.frames: list[bytearray | None] = [None] * pages

    # --- the application's side ---------------------------------------------

    def alloc(self, page: int, npages: int) -> None:
        for p in self._pages(page, npages):
            if self.frames[p] is not None:
                raise ValueError(f"page {p} is already mapped")
        for p in range(page, page + npages):
            self.frames[p] = bytearray(self.page_size)

    def free(self, page: int, npages: int) -> None:
        for p in self._pages(page, npages):
            if self.frames[p] is None:
                raise ValueError(f"page {p} is not mapped")
        for p in range(page, page + npages):
            self.frames[p] = None

    def write(self, addr: int, data: bytes) -> None:
        segments = self.segments(addr, len(data))
        if segments is None:
            raise ValueError(f"[{addr:#x}, +{len(data)}) is not mapped memory")
        at = 0
        for frame, off, n in segments:
            frame[off:off + n] = data[at:at + n]
            at += n

    def read(self, addr: int, length: int) -> bytes:
        segments = self.segments(addr, length)
        if segments is None:
            raise ValueError(f"[{addr:#x}, +{length}) is not mapped memory")
        return b"".join(bytes(frame[off:off + n]) for frame, off, n in segments)

    # --- the provider's side ------------------------------------------------

    def segments(self, addr: int, length: int) -> list[tuple[bytearray, int, int]] | None:
        """The frames under [addr, addr+length) as (frame, offset, bytes), or
        None unless every byte is mapped. Holding the frames is pinning them."""
        start = addr - self.base
        if length < 1 or start < 0 or start + length > self.pages * self.page_size:
            return None
        out = []
        while length:
            p, off = divmod(start, self.page_size)
            frame = self.frames[p]
            if frame is None:
                return None
            n = min(length, self.page_size - off)
            out.append((frame, off, n))
            start, length = start + n, length - n
        return out

    def _pages(self, page: int, npages: int) -> range:
        if npages < 1 or page < 0 or page + npages > self.pages:
            raise ValueError(f"pages [{page}, +{npages}) are outside the address space")
        return range(page, page + npages)
