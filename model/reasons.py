"""Why a step ended as it did: the clause (and the check within it) that
decided its outcome.

Several checks share a WSA code (WSAEINVAL answers a bad handle, a zero
length and a missing permission alike), so the status alone cannot say which
rule a provider got right. Each transition therefore also computes ``why``, a
reason code, from the same ordered checks that compute its status
(``decide`` in model/ops.py): the first failing check names the reason, and a success
names the path it took (a new registration, a repeated one, a cache hit).
Coverage is measured per reason, so each refusal clause must be reached on
its own, and a trace prints the clause behind every refusal.

Codes are small ints so that ``why`` is a z3 term like any other (the
outcome targets are proved per reason, proof/outcomes.py).
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Reason:
    code: int
    clause: str
    what: str

    def __str__(self) -> str:
        return f"{self.clause}: {self.what}" if self.clause else self.what


REASONS: list[Reason] = []


def _reason(clause: str, what: str) -> int:
    REASONS.append(Reason(len(REASONS), clause, what))
    return len(REASONS) - 1


def describe(code: int) -> str:
    """``"RDMA-04: buffer outside its registration"`` for a reason code."""
    return str(REASONS[code]) if 0 <= code < len(REASONS) else f"reason {code}"


NONE = _reason("", "")  # environment steps: nothing to explain

# WSPStartupEx
STARTED = _reason("START-01", "started at the version asked")
STARTED_CAPPED = _reason("START-01", "started at the highest version supported")
NOT_READY = _reason("START-02", "the SAN is not ready")
BAD_POINTER = _reason("START-03", "lpWSPData or lpProcTable not writable")
VERSION_LOW = _reason("START-05", "version below the lowest supported")
TOO_MANY_STARTUPS = _reason("START-04", "startup limit reached")

# extension lookup
FOUND = _reason("EXT-01", "function found")
OUT_TOO_SMALL = _reason("EXT-04", "output buffer smaller than a pointer")
UNKNOWN_GUID = _reason("EXT-02", "unknown GUID")
UNSUPPORTED = _reason("EXT-03", "optional function not supplied")

# registration (the local and the RDMA kind name their own clauses)
REG_NOT_CONNECTED = _reason("REG-01", "socket not connected")
REG_BAD_FLAGS = _reason("REG-02", "flags not MEM_READ, MEM_WRITE or MEM_READWRITE")
REG_ZERO_LENGTH = _reason("REG-03", "zero length")
REG_BAD_RANGE = _reason("REG-04", "range not in mapped memory")
REG_TABLE_FULL = _reason("REG-09", "registration table full")
REG_NEW = _reason("REG-07", "new registration, new handle")
REG_REPEATED = _reason("REG-05", "same buffer again: one more reference")
REG_CACHE_HIT = _reason("CACHE-02", "cached buffer served again with its handle")
RREG_NOT_CONNECTED = _reason("RREG-01", "socket not connected")
RREG_BAD_FLAGS = _reason("RREG-01", "flags not MEM_READ, MEM_WRITE or MEM_READWRITE")
RREG_ZERO_LENGTH = _reason("RREG-01", "zero length")
RREG_BAD_RANGE = _reason("RREG-01", "range not in mapped memory")
RREG_BLOCK_TOO_SMALL = _reason("RREG-03", "descriptor block too small")
RREG_TABLE_FULL = _reason("RREG-05", "registration table full")
RREG_NEW = _reason("RREG-02", "new registration, new descriptor")
RREG_REPEATED = _reason("RREG-04", "same buffer again: one more reference")
RREG_REEXPOSED = _reason("CACHE-03", "cached buffer re-exposed with a new descriptor")

# deregistration
DEREG_NOT_LIVE = _reason("DEREG-01", "not a live registration of this socket")
DEREG_IN_USE = _reason("DEREG-03", "a posted receive uses the buffer")
DEREG_DROPPED = _reason("DEREG-02", "one reference dropped")
DEREG_LAST = _reason("DEREG-04", "last reference: cached or released")
RDEREG_NOT_LIVE = _reason("RDEREG-01", "not a live RDMA registration of this socket")
RDEREG_DROPPED = _reason("RDEREG-03", "one reference dropped")
RDEREG_LAST = _reason("RDEREG-02", "last reference: the peer's access revoked")

# the cache callback
CALLBACK_RELEASED = _reason("CACHE-04", "cached registrations released")
CALLBACK_LIVE = _reason("CACHE-05", "a live registration overlaps the range")
CALLBACK_NOTHING = _reason("CACHE-05", "no cached registration overlaps the range")

# transfers: the connection, the local buffers, the target
NOT_CONNECTED = _reason("CONN-02", "connection closed or never made")
CONNECTION_FAILED = _reason("CONN-02", "connection in the error state")
BUFFER_COUNT = _reason("RDMA-03", "buffer count 0 or above max_sge")
BUFFER_HANDLE = _reason("RDMA-04", "buffer handle not a live local registration of this socket")
BUFFER_EMPTY = _reason("RDMA-04", "buffer of length 0")
BUFFER_OUTSIDE = _reason("RDMA-04", "buffer outside its registration")
BUFFER_ACCESS = _reason("ACC-03", "buffer's registration lacks the access needed")
TARGET_UNKNOWN = _reason("RDMA-05", "target not a live RDMA registration of the peer on this connection")
TARGET_RANGE = _reason("RDMA-05", "offset + length beyond the target")
TARGET_ACCESS = _reason("ACC-02", "target does not grant the access")
WRITTEN = _reason("RDMA-06", "local buffers written to the target")
READ = _reason("RDMA-07", "target read into the local buffers")
POSTED = _reason("XFER-02", "receive posted")
SEND_TOO_LONG = _reason("XFER-03", "message longer than the posted receive")
DELIVERED = _reason("XFER-03", "message delivered")
RECEIVED = _reason("XFER-02", "receive completed with data")
FLUSHED = _reason("CONN-01", "receive flushed by a connection failure")
