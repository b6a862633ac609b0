"""The verbs provider's registration table (REG-05..09, RREG-04/05,
CACHE-02..06): live entries (a reference count of at least one) and cached
ones (count zero, MR kept), indexed by what a registration is and by handle.

Each entry owns its MR and, while exposed, its memory window; the table
owns the entries. The MR of a registration covers exactly its buffer: rxe
checks an access through a window against the MR's range, not the
window's (lab/RXE-FACTS.md), so a larger MR would expose more than asked.
"""

from __future__ import annotations

from typing import Any, Iterator

from sanspi.spi import MEM_READWRITE

LOCAL, RDMA = 1, 2


def grants(flags: int, need: int) -> bool:
    """ACC-02/ACC-03: does a registration with ``flags`` allow ``need``?"""
    return flags == need or flags == MEM_READWRITE


class Registration:
    """One table entry. Owns its MR and, for an RDMA registration, the
    window it is exposed through (``mw``, bound under ``rkey``) and the one
    made ready for its next exposure (``next``, verbs_windows);
    ``close_window`` releases both windows (and so unbinds them)."""

    def __init__(self, kind: int, sock: int, addr: int, length: int, flags: int, mr: Any) -> None:
        self.kind, self.sock, self.addr, self.length, self.flags = kind, sock, addr, length, flags
        self.mr = mr
        self.refs = 1
        self.value: Any = None  # the handle (int) or the descriptor (bytes)
        #: What a registration call answers while the value stands: the
        #: same Ret object each time (making one costs a few us under TCG).
        self.answer: Any = None
        #: ``RealMemory.generation`` when the buffer was last found mapped
        #: (MEM-02): while it stands, the buffer is still mapped.
        self.mapped_at = -1
        self.mw: Any = None
        self.rkey = 0
        self.next: Any = None  # verbs_windows.Exposure, made ready ahead
        #: The bind's description (MR, range, rights): the same for every
        #: exposure of the entry, so made once (verbs_windows.Windows.prepare).
        self.bind_info: Any = None

    def key(self) -> tuple:
        return (self.kind, self.sock, self.addr, self.length, self.flags)

    def overlaps(self, addr: int, size: int) -> bool:
        return size > 0 and self.addr < addr + size and addr < self.addr + self.length

    def close_window(self) -> None:
        if self.mw is not None:
            mw, self.mw = self.mw, None
            mw.close()  # ibv_dealloc_mw: also unbinds, so the MR can go next
        if self.next is not None:
            ready, self.next = self.next, None
            ready.close()


class RegistrationTable:
    """The entries of one provider, in the order they were made, with an
    index by key (kind, socket, address, length, flags: one entry per key,
    since a repeated registration adds a reference and a cache hit revives
    the cached entry) and one by handle for LOCAL entries. ``free`` and
    ``close`` release windows before MRs; ``close`` may be called again."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self._entries: list[Registration] = []
        self._by_key: dict[tuple, Registration] = {}
        self._by_handle: dict[int, Registration] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Registration]:
        return iter(list(self._entries))

    def lookup(self, key: tuple) -> Registration | None:
        """The entry of ``key``, live or cached."""
        return self._by_key.get(key)

    def live_local(self, s: Any, handle: Any) -> Registration | None:
        """REG-06: the live LOCAL entry of ``handle`` on socket ``s``."""
        if not (type(handle) is int or (isinstance(handle, int) and not isinstance(handle, bool))):
            return None
        r = self._by_handle.get(handle)
        return r if r is not None and r.sock == s and r.refs > 0 else None

    def live_rdma(self, s: Any, descriptor: Any) -> Registration | None:
        """RDEREG-01: the live RDMA entry whose descriptor is ``descriptor``
        on socket ``s``."""
        if not isinstance(descriptor, (bytes, bytearray)):
            return None
        raw = bytes(descriptor)
        return next((r for r in self._entries if r.kind == RDMA and r.sock == s and r.refs > 0
                     and r.value == raw), None)

    def overlapping(self, addr: int, size: int) -> list[Registration]:
        return [r for r in self._entries if r.overlaps(addr, size)]

    def of_socket(self, s: Any) -> list[Registration]:
        return [r for r in self._entries if r.sock == s]

    def add(self, r: Registration) -> None:
        self._entries.append(r)
        self._by_key[r.key()] = r
        if r.kind == LOCAL:
            self._by_handle[r.value] = r

    def drop(self, r: Registration) -> None:
        """Take ``r`` out of the table (its MR and window stay with it)."""
        self._entries.remove(r)
        if self._by_key.get(r.key()) is r:
            del self._by_key[r.key()]
        if r.kind == LOCAL and self._by_handle.get(r.value) is r:
            del self._by_handle[r.value]

    def free(self, r: Registration) -> None:
        """Release ``r``'s window, then its MR (unpinning its pages)."""
        r.close_window()
        r.bind_info = None  # it names the MR
        if r.mr is not None:
            mr, r.mr = r.mr, None
            self.device.dereg_mr(mr)

    def close_windows(self) -> list[str]:
        """Every entry's window; the errors met, as text."""
        errors = []
        for r in self._entries:
            try:
                r.close_window()
            except Exception as exc:  # noqa: BLE001  keep releasing the rest
                errors.append(f"window: {exc}")
        return errors

    def close(self) -> list[str]:
        """Every entry's window, then MR; the table is then empty."""
        errors = self.close_windows()
        for r in self._entries:
            try:
                self.free(r)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"MR: {exc}")
        self._entries.clear()
        self._by_key.clear()
        self._by_handle.clear()
        return errors
