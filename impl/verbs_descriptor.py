"""The verbs provider's RDMA descriptor (RREG-02): its 32-byte format and
the per-connection codec that seals and unseals it.

The descriptor is magic, version, flags, the window's rkey, address and
length, then an 8-byte MAC of those 24 bytes under a key the registering
end made for this connection and gave its peer at connect: keyed BLAKE2b,
a MAC by design and one C call (an HMAC-SHA-256, even keyed once and
copied, cost about 110 us under TCG at every exposure; issue 15). The MAC is what
lets the requester refuse at call time (RDMA-08 outcome a) a descriptor of
another connection or one changed in any byte: without it, a descriptor
with only its flags, length or address altered would still carry a working
rkey, and the transfer would succeed where the model says a forged
descriptor never does (found by the random lockstep run: a one-byte forgery
of a field the NIC never sees went through). What the MAC cannot show, a
descriptor revoked by the peer, is posted and refused by the peer's rxe:
outcome (b).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from typing import Any

DESC_BODY = struct.Struct("<2sBBIQQ")
DESC = struct.Struct("<2sBBIQQ8s")
DESC_MAGIC, DESC_VERSION = b"SV", 3
MAC_SIZE = 8
assert DESC.size == 32 and DESC_BODY.size + MAC_SIZE == DESC.size
#: Genuine descriptors remembered per connection by ``Codec.unseal``.
UNSEALED_KEPT = 64


def mac(key: bytes, body: bytes) -> bytes:
    """The MAC of a descriptor's ``body`` under the connection's ``key``."""
    return hashlib.blake2b(body, key=key, digest_size=MAC_SIZE).digest()


def seal(key: bytes, magic: bytes, version: int, flags: int, rkey: int, addr: int, length: int) -> bytes:
    """A descriptor: its fields and their MAC under the connection's ``key``."""
    body = DESC_BODY.pack(magic, version, flags, rkey, addr, length)
    return body + mac(key, body)


def unseal(key: bytes, raw: Any) -> tuple | None:
    """(magic, version, flags, rkey, addr, length) of a descriptor sealed
    with ``key``, or None for anything else (garbage, forged, foreign)."""
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != DESC.size or not key:
        return None
    raw = bytes(raw)
    body, tag = raw[:DESC_BODY.size], raw[DESC_BODY.size:]
    if not hmac.compare_digest(tag, mac(key, body)):
        return None
    return DESC_BODY.unpack(body)


class Codec:
    """One connection's descriptor keys: ``key`` seals what this end
    exposes on the connection, ``peer_key`` (learnt at connect,
    ``set_peer``) opens what the peer exposes to it. Holds no verbs
    resource; ``close`` forgets."""

    def __init__(self) -> None:
        self.key = os.urandom(16)
        self.peer_key = b""
        #: Descriptors unsealed with ``peer_key`` (raw -> fields): the MAC of
        #: the same bytes under the same key never changes.
        self._unsealed: dict[bytes, tuple] = {}

    def set_peer(self, key: bytes) -> None:
        self.peer_key = key
        self._unsealed.clear()

    def seal(self, flags: int, rkey: int, addr: int, length: int) -> bytes:
        """``seal`` under this end's key (the same bytes)."""
        return seal(self.key, DESC_MAGIC, DESC_VERSION, flags, rkey, addr, length)

    def unseal(self, raw: Any) -> tuple | None:
        """``unseal`` under the peer's key, remembered for the descriptors
        that were genuine; anything else is checked every time."""
        if type(raw) is bytes:
            fields = self._unsealed.get(raw)
            if fields is not None:
                return fields
        fields = unseal(self.peer_key, raw)
        if fields is None:
            return None
        if len(self._unsealed) >= UNSEALED_KEPT:
            self._unsealed.clear()
        self._unsealed[bytes(raw)] = fields
        return fields

    def close(self) -> None:
        self._unsealed.clear()
