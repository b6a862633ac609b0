"""Arguments outside their type: the check behind spec/provider-interface.md,
"Arguments outside their type".

The model's arguments are integers and byte strings; a Python provider can
be handed anything (a float, NaN, a string, None, a bool). The spec says,
per argument, what such a value gets: the code of that argument's own value
check, at that check's place in the function's order. This module makes one
otherwise valid call per (function, argument, bad value), each on a fresh
connected pair, and reports every answer that differs. ``sanspi conform``
runs it before the campaign; a difference is a divergence.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import attrs

from sanspi.impl.interface import Provider, ProviderFactory, RdmaRegistration, WsaBufEx
from sanspi.spi import (
    OK, WSAECONNRESET, WSAEFAULT, WSAEINVAL, WSAENOTCONN, WSAVERNOTSUPPORTED, wsa_name,
)
from sanspi.testing import connected_pair

#: Values that are not integers, though some compare equal to one.
NOT_INTS: tuple = (1.0, math.nan, "1", None, True)
#: Values that are not descriptors (byte strings).
NOT_BYTES: tuple = ("descriptor", None, 5, 1.5)
#: Values that are not a WSABUFEX array, and elements that are not WSABUFEX.
NOT_ARRAYS: tuple = (None, 5, "buffers")
NOT_BUFFERS: tuple = (None, (1, 2), "abc", 7)


_VALID = object()  # "the valid argument" in the calls below


@attrs.frozen
class Rule:
    function: str
    argument: str
    values: tuple
    expect: frozenset  # the codes the spec allows
    clause: str


@attrs.frozen
class Setup:
    """A connected pair with one live local registration on each host and
    one RDMA registration of host 1, and a valid call of each function."""

    p0: Provider
    p1: Provider
    handle: Any
    descriptor: bytes


def _setup(factory: ProviderFactory) -> Setup:
    p0, p1 = connected_pair(factory)
    for p in (p0, p1):
        p.memory.alloc(0, 1)
    h = p0.register_memory(0, p0.memory.base, 64, 3)
    d = p1.register_rdma_memory(0, p1.memory.base, 64, 3, 4096)
    if h.status != OK or d.status != OK or not isinstance(d.value, RdmaRegistration):
        raise AssertionError(f"the set-up registrations failed: {wsa_name(h.status)}, {wsa_name(d.status)}")
    return Setup(p0, p1, h.value, d.value.descriptor)


def _calls(st: Setup) -> dict[str, Callable[..., Any]]:
    """function -> a call taking keyword overrides of its valid arguments."""
    p0, base = st.p0, st.p0.memory.base

    def bufs(length=8, buf=base, handle=st.handle):
        return [WsaBufEx(length, buf, handle)]

    return {
        "startup_ex": lambda version=0x0202: p0.startup_ex(version),
        "get_extension_function": lambda guid=b"", out_len=8: p0.get_extension_function(guid, out_len),
        "register_memory": lambda s=0, buf=base + 64, length=64, flags=3: p0.register_memory(s, buf, length, flags),
        "register_rdma_memory": lambda s=0, buf=base + 64, length=64, flags=3, descriptor_length=4096:
            p0.register_rdma_memory(s, buf, length, flags, descriptor_length),
        "deregister_memory": lambda s=0, handle=st.handle: p0.deregister_memory(s, handle),
        "deregister_rdma_memory": lambda s=0, descriptor=st.descriptor: st.p1.deregister_rdma_memory(s, descriptor),
        "cache_callback": lambda addr=base + 2048, size=64: p0.cache_callback(addr, size),
        "rdma_write": lambda s=0, buffers=_VALID, target=st.descriptor, offset=0, **b:
            p0.rdma_write(s, bufs(**b) if buffers is _VALID else buffers, target, offset),
        "send": lambda s=0, buffers=_VALID, **b: p0.send(s, bufs(**b) if buffers is _VALID else buffers),
        "recv": lambda s=0, buffer=_VALID, **b: p0.recv(s, bufs(**b)[0] if buffer is _VALID else buffer),
    }


_E = frozenset
RULES: tuple[Rule, ...] = (
    Rule("startup_ex", "version", NOT_INTS + (0x10000, -1), _E({WSAVERNOTSUPPORTED}), "START-05"),
    Rule("get_extension_function", "out_len", NOT_INTS, _E({WSAEFAULT}), "EXT-04"),
    Rule("register_memory", "s", NOT_INTS, _E({WSAENOTCONN}), "REG-01"),
    Rule("register_memory", "flags", NOT_INTS, _E({WSAEINVAL}), "REG-02"),
    Rule("register_memory", "length", NOT_INTS, _E({WSAEINVAL}), "REG-03"),
    Rule("register_memory", "buf", NOT_INTS, _E({WSAEFAULT}), "REG-04"),
    Rule("register_rdma_memory", "s", NOT_INTS, _E({WSAENOTCONN}), "RREG-01"),
    Rule("register_rdma_memory", "flags", NOT_INTS, _E({WSAEINVAL}), "RREG-01"),
    Rule("register_rdma_memory", "length", NOT_INTS, _E({WSAEINVAL}), "RREG-01"),
    Rule("register_rdma_memory", "buf", NOT_INTS, _E({WSAEFAULT}), "RREG-01"),
    Rule("register_rdma_memory", "descriptor_length", NOT_INTS, _E({WSAEFAULT}), "RREG-03"),
    Rule("deregister_memory", "handle", (1.5, math.nan, "handle", None, [1]), _E({WSAEINVAL}), "DEREG-01"),
    Rule("deregister_rdma_memory", "descriptor", NOT_BYTES, _E({WSAEINVAL}), "RDEREG-01"),
    Rule("cache_callback", "addr", NOT_INTS, _E({WSAEINVAL}), "CACHE-05"),
    Rule("cache_callback", "size", NOT_INTS, _E({WSAEINVAL}), "CACHE-05"),
    Rule("rdma_write", "s", NOT_INTS, _E({WSAENOTCONN}), "RDMA-02"),
    Rule("rdma_write", "buffers", NOT_ARRAYS, _E({WSAEINVAL}), "RDMA-03"),
    Rule("rdma_write", "buffers", tuple([b] for b in NOT_BUFFERS), _E({WSAEINVAL}), "RDMA-04"),
    Rule("rdma_write", "length", NOT_INTS, _E({WSAEINVAL}), "RDMA-04"),
    Rule("rdma_write", "buf", NOT_INTS, _E({WSAEFAULT}), "RDMA-04"),
    Rule("rdma_write", "target", NOT_BYTES, _E({WSAEINVAL, WSAECONNRESET}), "RDMA-08"),
    Rule("rdma_write", "offset", NOT_INTS, _E({WSAEINVAL, WSAECONNRESET}), "RDMA-08"),
    Rule("send", "buffers", NOT_ARRAYS, _E({WSAEINVAL}), "XFER-01"),
    Rule("send", "length", NOT_INTS, _E({WSAEINVAL}), "XFER-01"),
    Rule("send", "buf", NOT_INTS, _E({WSAEFAULT}), "XFER-01"),
    Rule("recv", "buffer", NOT_BUFFERS + ([(8, 0, 0)],), _E({WSAEINVAL}), "XFER-01"),  # a list is not one WSABUFEX
)


def check_argument_types(factory: ProviderFactory, rules=RULES) -> tuple[int, list[str]]:
    """(calls made, what differed from the spec). The calls of one rule share
    a connected pair while the answers are refusals that change nothing; any
    other answer (a success, a failed connection, an exception) and the next
    call gets a fresh pair, so one answer cannot spoil the next."""
    made, wrong = 0, []
    for rule in rules:
        st = None
        try:
            for value in rule.values:
                st = st or _setup(factory)
                made += 1
                try:
                    ret = _calls(st)[rule.function](**{rule.argument: value})
                except Exception as exc:  # noqa: BLE001  an exception across the SPI is the finding
                    wrong.append(f"{rule.function}({rule.argument}={value!r}) raised {type(exc).__name__}: {exc}")
                    st = _close(st)
                    continue
                status = ret[0] if isinstance(ret, tuple) and ret and isinstance(ret[0], int) else None
                if status not in rule.expect:
                    allowed = " or ".join(sorted(wsa_name(c) for c in rule.expect))
                    wrong.append(f"{rule.function}({rule.argument}={value!r}) gave "
                                 f"{wsa_name(status) if status is not None else repr(ret)}, the spec says {allowed} "
                                 f"({rule.clause})")
                elif rule.argument == "descriptor_length" and ret[1].length != st.p0.capabilities.descriptor_size:
                    wrong.append(f"register_rdma_memory(descriptor_length={value!r}) stored {ret[1].length!r}, "
                                 f"not the size needed (RREG-03)")
                if status in (None, OK, WSAECONNRESET) or status not in rule.expect:
                    st = _close(st)
        finally:
            _close(st)
    return made, wrong


def _close(st: Setup | None) -> None:
    if st is not None:
        for p in (st.p0, st.p1):
            p.shutdown()
    return None
