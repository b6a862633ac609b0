"""The verbs-backed SAN provider: impl/interface.py's Provider on pyverbs,
over Soft-RoCE (rxe) in the lab (spec/, every "Verbs." paragraph).

One provider is one host: a device context and a PD, one RC queue pair per
connected socket (an extended QP, for type-2 memory window binds and local
invalidates), and a registration table exactly as spec REG-*/RREG-*/CACHE-*
say. What the documents leave to the provider is decided here as the spec
decides it; where a verbs fact shapes the code, the comment says which.

Facts from the lab (lab/RXE-FACTS.md, and seen while writing this):

* A type-2 window's rkey works only on the QP it was bound on, and a local
  invalidate revokes it at once, but rxe does not check the window's range:
  so every RDMA registration gets its own MR covering exactly the buffer.
* pyverbs 44 does not update ``MW.rkey`` after a bind: the provider keeps
  the key it bound with.
* An MR with a bound window cannot be deregistered (EINVAL): windows go
  first, then QPs, then MRs.
* librxe 44's extended-API ``wr_set_sge_list`` with more than one SGE
  completes with IBV_WC_LOC_QP_OP_ERR; the legacy ``ibv_post_send`` with
  the same list works. Data WRs are therefore posted the legacy way and
  only binds and invalidates go through the extended API.
* A remote access error (IBV_WC_REM_ACCESS_ERR) moves *both* QPs to ERR,
  and so does an overlong send (the sender sees IBV_WC_REM_OP_ERR, the
  receive IBV_WC_LOC_QP_OP_ERR). The failing end's ``_fail`` tells the
  peer on the side channel below (its QP would say ERR too, but asking it
  on every call cost ~130 us under TCG); the peer enters the error state on
  its next call (CONN-01).
* Exhausted RNR retries (or a transport timeout) fail only the requester's
  QP. So the TCP connection of the QPN/PSN/GID exchange is kept per
  endpoint as a side channel; a failing end writes one byte on it, and the
  peer checks for it on its next call.

What a call costs (issue 8): the connection-state check is a ``poll`` of the
side channel with timeout 0, not an ``ibv_query_qp``. Every way a QP reaches
ERR starts with a failed completion at one end, whose ``_fail`` writes the
byte and waits until the peer's TCP has acknowledged it (SIOCOUTQ is 0), so
the byte is in the peer's socket before the failing call returns, in one
guest or across two; the QP is queried only when the side channel or a
failed receive completion says the state may have changed. The registration
table is indexed by key and by handle, ``RealMemory.mapped`` is a memchr over
a page map, and a data WR's pyverbs objects are made once per connection,
buffers and target, then posted again with a new ``wr_id``.
"""

from __future__ import annotations

import fcntl
import functools
import hmac
import itertools
import json
import os
import select
import socket
import struct
import termios
import time
from typing import Any, Callable

from sanspi.impl.interface import Capabilities, RdmaRegistration, Ret, WsaBufEx
from sanspi.impl.realmem import RealMemory
from sanspi.spi import (
    FN_CACHE_CALLBACK, FN_DEREGISTER_MEMORY, FN_DEREGISTER_RDMA_MEMORY, FN_RDMA_READ, FN_RDMA_WRITE,
    FN_REGISTER_MEMORY, FN_REGISTER_RDMA_MEMORY, FN_UNKNOWN, HIGHEST_VERSION, LOWEST_VERSION, MEM_READ,
    MEM_READWRITE, MEM_WRITE, POINTER_SIZE, WSA_IO_PENDING, WSA_OPERATION_ABORTED, WSAECONNABORTED,
    WSAECONNRESET, WSAEFAULT, WSAEINVAL, WSAENOBUFS, WSAENOTCONN, WSAEOPNOTSUPP, WSAEPROCLIM,
    WSASYSNOTREADY, WSAVERNOTSUPPORTED, function_index,
)

try:  # the hot paths' pyverbs names, bound once (a host without rdma-core imports this module too)
    import pyverbs.enums as _e
    from pyverbs.wr import SGE as _SGE, RecvWR as _RecvWR, SendWR as _SendWR
except ImportError:  # pragma: no cover  startup_ex then answers WSAEINVAL, as before
    _e = _SGE = _RecvWR = _SendWR = None

OK = 0
PORT = 1
#: Every completion is waited for at most this long: under TCG an RDMA
#: round trip is ~125 us, a retransmit on the two-host link tens of ms.
POLL_DEADLINE_S = 10.0
#: How long accept/connect wait for the peer (the other guest may boot late).
CONNECT_DEADLINE_S = 120.0
#: How long a failing end waits for the peer's TCP to acknowledge the
#: side channel's "E" (a retransmit on the two-host link takes ~200 ms).
SIDE_ACK_DEADLINE_S = 5.0
#: Data WRs kept per connection for reuse (``_post``); more are made afresh.
WR_CACHE = 32

LOCAL, RDMA = 1, 2
CONNECTED, ERRORED = 1, 2

# The descriptor (RREG-02), 32 bytes: magic, version, flags, rkey of the
# window, address, length, then an 8-byte MAC of those 24 bytes under a key
# the registering end made for this connection and gave its peer at
# connect. The MAC is what lets the requester refuse at call time
# (RDMA-08 outcome a) a descriptor of another connection or one changed
# in any byte: without it, a descriptor with only its flags, length or
# address altered would still carry a working rkey, and the transfer would
# succeed where the model says a forged descriptor never does (found by
# the random lockstep run: a one-byte forgery of a field the NIC never
# sees went through). What the MAC cannot show, a descriptor revoked by
# the peer, is posted and refused by the peer's rxe: outcome (b).
DESC_BODY = struct.Struct("<2sBBIQQ")
DESC = struct.Struct("<2sBBIQQ8s")
DESC_MAGIC, DESC_VERSION = b"SV", 2
MAC_SIZE = 8
assert DESC.size == 32 and DESC_BODY.size + MAC_SIZE == DESC.size


def seal(key: bytes, magic: bytes, version: int, flags: int, rkey: int, addr: int, length: int) -> bytes:
    """A descriptor: its fields and their MAC under the connection's ``key``."""
    body = DESC_BODY.pack(magic, version, flags, rkey, addr, length)
    return body + hmac.digest(key, body, "sha256")[:MAC_SIZE]


def unseal(key: bytes, raw: Any) -> tuple | None:
    """(magic, version, flags, rkey, addr, length) of a descriptor sealed
    with ``key``, or None for anything else (garbage, forged, foreign)."""
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != DESC.size or not key:
        return None
    raw = bytes(raw)
    body, mac = raw[:DESC_BODY.size], raw[DESC_BODY.size:]
    if not hmac.compare_digest(mac, hmac.digest(key, body, "sha256")[:MAC_SIZE]):
        return None
    return DESC_BODY.unpack(body)


#: Handles come from one counter for the whole process, so two providers in
#: one process (the loopback lab) never hand out equal handles: another
#: host's handle is then really foreign, never one of ours by accident.
_HANDLES = itertools.count(1)


def grants(flags: int, need: int) -> bool:
    """ACC-02/ACC-03: does a registration with ``flags`` allow ``need``?"""
    return flags == need or flags == MEM_READWRITE


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _fail_local(code: int, n: int = 0) -> Ret:
    return Ret(code, 0)


def _fail_rdma(code: int, n: int = 0) -> Ret:
    return Ret(code, RdmaRegistration(None, n))


class _Registration:
    """One table entry (live: refs >= 1; cached: refs == 0). Owns its MR and,
    while exposed, its memory window; ``close`` releases window then MR."""

    def __init__(self, kind: int, sock: int, addr: int, length: int, flags: int, mr: Any) -> None:
        self.kind, self.sock, self.addr, self.length, self.flags = kind, sock, addr, length, flags
        self.mr = mr
        self.refs = 1
        self.value: Any = None  # the handle (int) or the descriptor (bytes)
        self.mw: Any = None
        self.rkey = 0

    def key(self) -> tuple:
        return (self.kind, self.sock, self.addr, self.length, self.flags)

    def overlaps(self, addr: int, size: int) -> bool:
        return size > 0 and self.addr < addr + size and addr < self.addr + self.length

    def close_window(self) -> None:
        if self.mw is not None:
            mw, self.mw = self.mw, None
            mw.close()  # ibv_dealloc_mw: also unbinds, so the MR can go next

    def close(self) -> None:
        self.close_window()
        if self.mr is not None:
            mr, self.mr = self.mr, None
            mr.close()


class _Endpoint:
    """One connected socket: its QP, CQs and posted receive. Owns the verbs
    objects; ``close`` destroys the QP before the CQs."""

    def __init__(self, qp: Any, scq: Any, rcq: Any) -> None:
        self.qp, self.scq, self.rcq = qp, scq, rcq
        self.conn = CONNECTED
        self.remote_qpn = 0
        #: Descriptor MAC keys: ours for what we expose on this connection,
        #: the peer's for what it exposes to us (exchanged at connect).
        self.key = os.urandom(16)
        self.peer_key = b""
        self.exposed: set[int] = set()  # every rkey ever bound on this connection (CACHE-03)
        self.recv: tuple | None = None  # (handle, addr, len) of the posted receive
        self.recv_result: Ret | None = None  # its completion, once seen
        self.next_wr = 1
        #: The TCP connection of the exchange, kept open: it carries the one
        #: message "this connection failed" when this end's QP went to ERR
        #: without the peer's QP doing so (a local timeout, RNR retries
        #: exhausted), so the peer still enters the error state (CONN-01).
        self.side: socket.socket | None = None
        #: A poll object on ``side`` (POLLIN): readable means the peer said
        #: something or hung up, the only time ``_state`` looks further.
        self.watch: Any = None
        #: A receive completed in error here: the QP may be in ERR.
        self.suspect = False
        #: Descriptors this end has unsealed with ``peer_key`` (raw -> fields).
        self.unsealed: dict[bytes, tuple] = {}
        #: Data WRs made by ``_post``, by (opcode, SGEs, rkey, remote address).
        self.wrs: dict[tuple, Any] = {}

    def close(self) -> None:
        self.watch = None
        self.wrs.clear()
        if self.side is not None:
            self.side.close()
            self.side = None
        for name in ("qp", "scq", "rcq"):
            obj = getattr(self, name)
            if obj is not None:
                setattr(self, name, None)
                obj.close()


def _spi(default_value: Any = 0) -> Callable:
    """No Python exception crosses the SPI: an unexpected one is recorded in
    ``provider.errors`` (tests assert it stays empty) and answered with
    WSAEINVAL, the code for arguments the provider cannot use."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def guarded(self: "VerbsProvider", *args: Any, **kwargs: Any) -> Ret:
            try:
                return fn(self, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001  the SPI has no exceptions
                self.errors.append(f"{fn.__name__}: {type(exc).__name__}: {exc}")
                value = default_value() if callable(default_value) else default_value
                return Ret(WSAEINVAL, value)

        return guarded

    return wrap


class VerbsProvider:
    """One host's SAN provider on an rxe device (impl.interface.Provider)."""

    name = "verbs"

    def __init__(self, memory: RealMemory | None = None, *, device: str | None = None,
                 gid_index: int | None = None, local_addr: str | None = None,
                 has_rdma_read: bool = True, has_cache: bool = True, slots: int = 8,
                 max_sge: int = 4, max_startups: int = 4, pages: int = 8) -> None:
        self.memory = memory if memory is not None else RealMemory(pages)
        self._own_memory = memory is None
        self.capabilities = Capabilities(has_rdma_read=has_rdma_read, has_cache=has_cache, slots=slots,
                                         max_sge=max_sge, descriptor_size=DESC.size,
                                         max_startups=max_startups)
        self.device = device if device is not None else os.environ.get("SANSPI_LAB_DEVICE")
        self.gid_index = gid_index if gid_index is not None else int(os.environ.get("SANSPI_LAB_GID", "1"))
        self.local_addr = local_addr or os.environ.get("SANSPI_LAB_LOCAL_ADDR") or "127.0.0.1"
        self.errors: list[str] = []
        #: Verbs calls made, for tests (a cache hit makes no ibv_reg_mr).
        self.stats = {"reg_mr": 0, "dereg_mr": 0, "bind_mw": 0, "local_inv": 0}
        self._ctx: Any = None
        self._pd: Any = None
        self._gid = ""
        self._startups = 0
        self._eps: dict[int, _Endpoint] = {}
        self._listeners: dict[int, socket.socket] = {}
        self._regs: list[_Registration] = []
        #: Indexes of ``_regs`` (kept by ``_table_add``/``_table_drop``): key ->
        #: its entries in table order, and a LOCAL entry's handle -> entry.
        self._by_key: dict[tuple, list[_Registration]] = {}
        self._by_handle: dict[int, _Registration] = {}
        self._closed = False

    # --- WSPStartupEx (START-*) --------------------------------------------

    def _open_device(self) -> bool:
        """START-02: the SAN is ready when the device opens and its port is
        ACTIVE with a GID; opened once, kept until shutdown."""
        if self._ctx is not None:
            return True
        if self._closed:
            return False
        import pyverbs.enums as e
        from pyverbs.device import Context, get_device_list
        from pyverbs.pd import PD

        try:
            names = [d.name.decode() for d in get_device_list()]
        except Exception:  # noqa: BLE001  libibverbs raises on a kernel without IB
            names = []
        name = self.device or next((n for n in names if n.startswith("rxe")), None)
        if name is None or name not in names:
            return False
        ctx = Context(name=name)
        try:
            if ctx.query_port(PORT).state != e.IBV_PORT_ACTIVE:
                raise OSError("port not active")
            gid = ctx.query_gid(PORT, self.gid_index).gid
            if gid.strip("0:") == "":
                raise OSError("no GID")
            if ctx.query_device().max_sge < self.capabilities.max_sge:
                raise OSError("device has fewer SGEs than the provider promises (RDMA-03)")
            pd = PD(ctx)
        except Exception:  # noqa: BLE001  any of these means "not ready"
            ctx.close()
            return False
        self._ctx, self._pd, self._gid, self.device = ctx, pd, gid, name
        return True

    @_spi()
    def startup_ex(self, version: int, wsp_data: bool = True, proc_table: bool = True) -> Ret:
        if not self._open_device():
            return Ret(WSASYSNOTREADY, 0)
        if not (wsp_data and proc_table):
            return Ret(WSAEFAULT, 0)
        if not _is_int(version) or not 0 <= version <= 0xFFFF:
            return Ret(WSAVERNOTSUPPORTED, 0)
        asked = (version & 0xFF, version >> 8)
        if asked < LOWEST_VERSION:
            return Ret(WSAVERNOTSUPPORTED, 0)
        if self._startups >= self.capabilities.max_startups:
            return Ret(WSAEPROCLIM, 0)
        self._startups += 1
        agreed = min(asked, HIGHEST_VERSION)
        return Ret(OK, agreed[0] | agreed[1] << 8)

    # --- WSPIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER) (EXT-*) ---------------

    @_spi()
    def get_extension_function(self, guid: bytes, out_len: int = POINTER_SIZE) -> Ret:
        if not _is_int(out_len) or out_len < POINTER_SIZE:
            return Ret(WSAEFAULT, None)
        fn = function_index(guid) if isinstance(guid, (bytes, str)) else FN_UNKNOWN
        if fn == FN_UNKNOWN:
            return Ret(WSAEINVAL, None)
        if (fn == FN_RDMA_READ and not self.capabilities.has_rdma_read) or (
                fn == FN_CACHE_CALLBACK and not self.capabilities.has_cache):
            return Ret(WSAEOPNOTSUPP, None)
        table = {
            FN_REGISTER_MEMORY: self.register_memory,
            FN_DEREGISTER_MEMORY: self.deregister_memory,
            FN_REGISTER_RDMA_MEMORY: self.register_rdma_memory,
            FN_DEREGISTER_RDMA_MEMORY: self.deregister_rdma_memory,
            FN_RDMA_WRITE: self.rdma_write,
            FN_RDMA_READ: self.rdma_read,
            FN_CACHE_CALLBACK: self.cache_callback,
        }
        return Ret(OK, table[fn])

    # --- connections (SOCK-*) -------------------------------------------------

    def listen(self, s: int) -> bytes:
        """A TCP listener for the out-of-band exchange; the token says where."""
        if self._ctx is None or s in self._eps:
            return b""
        old = self._listeners.pop(s, None)
        if old is not None:
            old.close()
        srv = socket.create_server((self.local_addr, 0))
        srv.settimeout(CONNECT_DEADLINE_S)
        self._listeners[s] = srv
        host, port = srv.getsockname()[:2]
        return json.dumps({"addr": host, "port": port}).encode()

    @_spi()
    def accept(self, s: int) -> Ret:
        srv = self._listeners.pop(s, None)
        if srv is None:
            return Ret(WSAEINVAL, 0)
        try:
            conn, _ = srv.accept()
        except OSError:
            return Ret(WSAENOTCONN, 0)
        finally:
            srv.close()
        return self._establish(s, conn)

    @_spi()
    def connect(self, s: int, token: bytes) -> Ret:
        if self._ctx is None:
            return Ret(WSAENOTCONN, 0)
        try:
            where = json.loads(token)
            addr = (str(where["addr"]), int(where["port"]))
        except (ValueError, KeyError, TypeError):
            return Ret(WSAEINVAL, 0)
        end = time.monotonic() + CONNECT_DEADLINE_S
        while True:  # the peer's listener may not be up yet (two-host)
            try:
                conn = socket.create_connection(addr, timeout=5)
                break
            except OSError:
                if time.monotonic() > end:
                    return Ret(WSAENOTCONN, 0)
                time.sleep(0.2)
        return self._establish(s, conn)

    def _establish(self, s: int, conn: socket.socket) -> Ret:
        """Create the RC QP, swap QPN/PSN/GID over ``conn``, bring the QP to
        RTS, and wait until the peer's is too (so neither end posts to a QP
        that is not ready to answer). ``conn`` is kept as the endpoint's
        side channel, or closed on failure."""
        import pyverbs.enums as e
        from pyverbs.addr import AHAttr, GID, GlobalRoute
        from pyverbs.cq import CQ
        from pyverbs.qp import QPAttr, QPCap, QPEx, QPInitAttrEx

        if s in self._eps or not _is_int(s):
            conn.close()
            return Ret(WSAEINVAL, 0)
        conn.settimeout(CONNECT_DEADLINE_S)
        scq = CQ(self._ctx, 32)
        rcq = CQ(self._ctx, 8)
        ops = (e.IBV_QP_EX_WITH_RDMA_WRITE | e.IBV_QP_EX_WITH_RDMA_READ | e.IBV_QP_EX_WITH_SEND
               | e.IBV_QP_EX_WITH_BIND_MW | e.IBV_QP_EX_WITH_LOCAL_INV)
        init = QPInitAttrEx(qp_type=e.IBV_QPT_RC, scq=scq, rcq=rcq, pd=self._pd,
                            cap=QPCap(max_send_wr=16, max_recv_wr=4,
                                      max_send_sge=self.capabilities.max_sge, max_recv_sge=1),
                            comp_mask=e.IBV_QP_INIT_ATTR_PD | e.IBV_QP_INIT_ATTR_SEND_OPS_FLAGS,
                            send_ops_flags=ops)
        # The QP allows every remote access: the window (and its MR) decide.
        access = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ
        attr = QPAttr(port_num=PORT)
        attr.qp_access_flags = access
        try:
            qp = QPEx(self._ctx, init, attr)
        except Exception:
            rcq.close()
            scq.close()
            raise
        ep = _Endpoint(qp, scq, rcq)
        try:
            psn = (qp.qp_num * 2654435761) & 0xFFFFFF  # any PSN works; a fixed one keeps runs repeatable
            rf, wf = conn.makefile("r"), conn.makefile("w")
            wf.write(json.dumps({"qpn": qp.qp_num, "psn": psn, "gid": self._gid, "key": ep.key.hex()}) + "\n")
            wf.flush()
            peer = json.loads(rf.readline())
            attr = QPAttr(port_num=PORT)
            attr.qp_access_flags = access
            attr.path_mtu = e.IBV_MTU_1024
            attr.dest_qp_num = int(peer["qpn"])
            attr.rq_psn = int(peer["psn"])
            attr.sq_psn = psn
            attr.max_dest_rd_atomic = 1
            attr.max_rd_atomic = 1
            attr.min_rnr_timer = 12
            attr.timeout = 14  # 67 ms a try: retransmits on the lossy two-host link recover
            attr.retry_cnt = 7
            # The switch always posts before the peer sends (XFER-03), so RNR
            # means a bug: give up after a few retries instead of forever.
            attr.rnr_retry = 3
            attr.ah_attr = AHAttr(port_num=PORT, is_global=1,
                                  gr=GlobalRoute(dgid=GID(str(peer["gid"])), sgid_index=self.gid_index))
            qp.to_rts(attr)
            wf.write('{"rts": true}\n')
            wf.flush()
            if json.loads(rf.readline()) != {"rts": True}:
                raise OSError("peer did not reach RTS")
            rf.close()  # the file objects only; the socket stays for ep.side
            wf.close()
        except Exception:
            conn.close()
            ep.close()
            raise
        conn.setblocking(False)
        ep.side = conn
        ep.watch = select.poll()
        ep.watch.register(conn, select.POLLIN)
        ep.remote_qpn = int(peer["qpn"])
        ep.peer_key = bytes.fromhex(str(peer["key"]))
        self._eps[s] = ep
        return Ret(OK, 0)

    @_spi()
    def close(self, s: int) -> Ret:
        """SOCK-02, CACHE-06: release every registration of ``s`` (windows,
        then the QP, then the MRs), live and cached, then the endpoint."""
        ep = self._eps.pop(s, None) if _is_int(s) else None
        mine = [r for r in self._regs if r.sock == s]
        for r in mine:
            self._table_drop(r)
        for r in mine:
            r.close_window()
        if ep is not None:
            ep.close()
        for r in mine:
            self._dereg_mr(r)
        return Ret(OK, 0) if ep is not None else Ret(WSAENOTCONN, 0)

    # --- endpoint state (CONN-01, CONN-02) --------------------------------

    def _state(self, s: Any) -> int:
        """The endpoint's state, after learning whether the connection
        failed at the other end. The peer's ``_fail`` has put its "E" into
        our side channel's socket before its call returned, so a ``poll``
        with timeout 0 tells; only then (or after a receive failed here) is
        the QP queried, as before: ERR, or the peer's word, is the error
        state (CONN-01)."""
        ep = self._eps.get(s) if type(s) is int or _is_int(s) else None
        if ep is None:
            return 0
        if ep.conn == CONNECTED and (ep.suspect or (ep.watch is not None and ep.watch.poll(0))):
            ep.suspect = False
            if self._state_of_qp(ep) == _e.IBV_QPS_ERR or self._peer_failed(ep):
                self._fail(ep)
        return ep.conn

    @staticmethod
    def _peer_failed(ep: _Endpoint) -> bool:
        """Has the peer said, on the side channel, that the connection failed?
        At the end of its stream (the peer closed it) nothing more can come:
        the channel is no longer watched."""
        if ep.side is None:
            return False
        try:
            got = ep.side.recv(1)
        except (BlockingIOError, InterruptedError):
            return False  # nothing said: the usual case
        except OSError:
            ep.watch = None
            return False
        if not got:
            ep.watch = None
        return got == b"E"

    @staticmethod
    def _await_delivery(sock: socket.socket, deadline_s: float = SIDE_ACK_DEADLINE_S) -> None:
        """Wait until the peer's TCP has acknowledged everything sent on
        ``sock`` (SIOCOUTQ, unacknowledged bytes, is 0): the byte is then in
        the peer's socket, and its next call sees it. Bounded; a peer that
        hung up or reset is not waited for."""
        end = time.monotonic() + deadline_s
        hup = select.poll()
        hup.register(sock, select.POLLERR | select.POLLHUP | select.POLLRDHUP)
        while True:
            try:
                left = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
            except OSError:
                return
            if left <= 0 or hup.poll(0) or time.monotonic() >= end:
                return
            time.sleep(0.0002)

    def _fail(self, ep: _Endpoint) -> None:
        """CONN-01 on this end: the error state; a posted receive is done,
        aborted (its flush completion, if it comes, is ignored)."""
        import pyverbs.enums as e

        if ep.conn == ERRORED:
            return
        ep.conn = ERRORED
        attr, _ = ep.qp.query(e.IBV_QP_STATE)
        # Tell the peer in any case: its QP is in ERR too after a remote
        # access error, but not after a local timeout or exhausted RNR
        # retries, and then only this message takes it down (CONN-01).
        if ep.side is not None:
            try:
                ep.side.send(b"E")
                self._await_delivery(ep.side)
            except OSError:
                pass  # the peer is gone: nothing left to tell
        if attr.qp_state != e.IBV_QPS_ERR:  # a local timeout: take the QP down too
            from pyverbs.qp import QPAttr

            down = QPAttr()
            down.qp_state = e.IBV_QPS_ERR
            ep.qp.modify(down, e.IBV_QP_STATE)
        if ep.recv is not None and ep.recv_result is None:
            self._poll_recv(ep, 0.0)  # a receive that completed before the failure keeps its result
            if ep.recv_result is None:
                ep.recv_result = Ret(WSA_OPERATION_ABORTED, 0)

    # --- registration (REG-*, RREG-*, CACHE-02/03) ---------------------------

    def _find(self, key: tuple, live: bool) -> _Registration | None:
        for r in self._by_key.get(key, ()):
            if (r.refs > 0) == live:
                return r
        return None

    def _table_add(self, r: _Registration) -> None:
        self._regs.append(r)
        self._by_key.setdefault(r.key(), []).append(r)
        if r.kind == LOCAL:
            self._by_handle[r.value] = r

    def _table_drop(self, r: _Registration) -> None:
        self._regs.remove(r)
        same = self._by_key.get(r.key(), [])
        if r in same:
            same.remove(r)
        if not same:
            self._by_key.pop(r.key(), None)
        if r.kind == LOCAL and self._by_handle.get(r.value) is r:
            del self._by_handle[r.value]

    def _reg_mr(self, addr: int, length: int, access: int) -> Any:
        from pyverbs.mr import MR

        mr = MR(self._pd, length, access, address=addr)
        self.stats["reg_mr"] += 1
        return mr

    def _dereg_mr(self, r: _Registration) -> None:
        if r.mr is not None:
            r.close()
            self.stats["dereg_mr"] += 1

    def _register(self, kind: int, s: Any, buf: Any, length: Any, flags: Any, desc_len: Any = 0) -> Ret:
        fail = _fail_rdma if kind == RDMA else _fail_local
        if self._state(s) != CONNECTED:
            return fail(WSAENOTCONN)
        # (``type(x) is int or _is_int(x)``: the usual int answers without a call)
        if not (type(flags) is int or _is_int(flags)) or flags not in (MEM_READ, MEM_WRITE, MEM_READWRITE):
            return fail(WSAEINVAL)
        if not (type(length) is int or _is_int(length)) or length < 1:
            return fail(WSAEINVAL)
        if not (type(buf) is int or _is_int(buf)) or not self.memory.mapped(buf, length):
            return fail(WSAEFAULT)
        if kind == RDMA and (not _is_int(desc_len) or desc_len < DESC.size):
            return fail(WSAEFAULT, DESC.size)  # RREG-03: the size needed
        key = (kind, s, buf, length, flags)
        live = self._find(key, live=True)
        if live is not None:  # REG-05, RREG-04: one more reference, same value
            live.refs += 1
            return self._answer(live)
        hit = self._find(key, live=False) if self.capabilities.has_cache else None
        if hit is not None:
            if kind == LOCAL:  # CACHE-02: the kept MR serves again, no ibv_reg_mr
                hit.refs = 1
                return self._answer(hit)
            if not self._expose(hit, self._eps[s]):  # CACHE-03: a new window, a new descriptor
                return fail(WSAENOBUFS)
            hit.refs = 1
            return self._answer(hit)
        if len(self._regs) >= self.capabilities.slots:  # REG-09, RREG-05: cached entries count
            return fail(WSAENOBUFS)
        import pyverbs.enums as e
        from pyverbs.pyverbs_error import PyverbsRDMAError

        if kind == LOCAL:
            # MEM_READ needs no access bit (a gather source); a sink needs LOCAL_WRITE (ACC-03)
            access = e.IBV_ACCESS_LOCAL_WRITE if grants(flags, MEM_WRITE) else 0
        else:
            access = e.IBV_ACCESS_MW_BIND
            if grants(flags, MEM_READ):
                access |= e.IBV_ACCESS_REMOTE_READ
            if grants(flags, MEM_WRITE):
                access |= e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_LOCAL_WRITE
        try:
            mr = self._reg_mr(buf, length, access)
        except PyverbsRDMAError as exc:  # EFAULT: the pages went away; else out of resources
            return fail(WSAEFAULT if exc.error_code == 14 else WSAENOBUFS)
        r = _Registration(kind, s, buf, length, flags, mr)
        if kind == LOCAL:
            r.value = next(_HANDLES)
        elif not self._expose(r, self._eps[s]):
            self._dereg_mr(r)
            return fail(WSAENOBUFS)
        self._table_add(r)
        return self._answer(r)

    def _answer(self, r: _Registration) -> Ret:
        if r.kind == LOCAL:
            return Ret(OK, r.value)
        return Ret(OK, RdmaRegistration(r.value, DESC.size))

    def _expose(self, r: _Registration, ep: _Endpoint) -> bool:
        """Bind a fresh type-2 window over the whole MR on this connection's
        QP with an rkey never exposed on it before (CACHE-03, RDMA-08: a
        stale descriptor cannot hit the new window by a 1-in-256 key match),
        and make the descriptor that carries it."""
        import pyverbs.enums as e
        from pyverbs.mr import MW, MWBindInfo

        mw = MW(self._pd, e.IBV_MW_TYPE_2)
        index = mw.rkey & ~0xFF
        key = next((index | ((mw.rkey + i) & 0xFF) for i in range(1, 256)
                    if (index | ((mw.rkey + i) & 0xFF)) not in ep.exposed), None)
        if key is None:
            mw.close()
            return False
        access = ((e.IBV_ACCESS_REMOTE_READ if grants(r.flags, MEM_READ) else 0)
                  | (e.IBV_ACCESS_REMOTE_WRITE if grants(r.flags, MEM_WRITE) else 0))
        try:
            wc = self._post_ex(ep, lambda qp: qp.wr_bind_mw(mw, key, MWBindInfo(r.mr, r.addr, r.length, access)))
        except Exception:
            mw.close()  # never leave a window behind: its MR could not be deregistered
            raise
        self.stats["bind_mw"] += 1
        if wc is None or wc.status != e.IBV_WC_SUCCESS:
            mw.close()
            if wc is None or self._state_of_qp(ep) == e.IBV_QPS_ERR:
                self._fail(ep)
            return False
        ep.exposed.add(key)
        r.mw, r.rkey = mw, key
        r.value = seal(ep.key, DESC_MAGIC, DESC_VERSION, r.flags, key, r.addr, r.length)
        return True

    def _revoke(self, r: _Registration, ep: _Endpoint | None) -> None:
        """RDEREG-02: the peer loses access before the call returns. On a
        working QP a local invalidate of the key we bound (not pyverbs'
        stale ``MW.rkey``); then the window is freed. On a QP in ERR no WR
        can run, and none is needed: nothing reaches a dead QP, and
        deallocating the window unbinds it."""
        import pyverbs.enums as e

        if r.mw is None:
            return
        if ep is not None and ep.conn == CONNECTED:
            rkey = r.rkey
            wc = self._post_ex(ep, lambda qp: qp.wr_local_inv(rkey))
            self.stats["local_inv"] += 1
            if wc is None or wc.status != e.IBV_WC_SUCCESS:
                self._fail(ep)
        r.close_window()

    @_spi(lambda: 0)
    def register_memory(self, s: int, buf: int, length: int, flags: int) -> Ret:
        """WSPRegisterMemory: REG-01..09, CACHE-02."""
        return self._register(LOCAL, s, buf, length, flags)

    @_spi(lambda: RdmaRegistration(None, 0))
    def register_rdma_memory(self, s: int, buf: int, length: int, flags: int, descriptor_length: int) -> Ret:
        """WSPRegisterRdmaMemory: RREG-01..06, CACHE-03."""
        return self._register(RDMA, s, buf, length, flags, descriptor_length)

    def _live_local(self, s: Any, handle: Any) -> _Registration | None:
        if not (type(handle) is int or _is_int(handle)):
            return None
        r = self._by_handle.get(handle)
        return r if r is not None and r.sock == s and r.refs > 0 else None

    def _last_reference(self, r: _Registration) -> None:
        """DEREG-04: cached (MR and pin kept) or, without the cache, released."""
        if not self.capabilities.has_cache:
            self._table_drop(r)
            self._dereg_mr(r)

    @_spi()
    def deregister_memory(self, s: int, handle: Any) -> Ret:
        """WSPDeregisterMemory: DEREG-01..04."""
        self._state(s)
        r = self._live_local(s, handle)
        if r is None:
            return Ret(WSAEINVAL, 0)
        ep = self._eps.get(s)
        if ep is not None and ep.recv is not None and ep.recv[0] == handle:
            if ep.recv_result is None:
                self._poll_recv(ep, 0.0)
            if ep.recv_result is None:  # DEREG-03: a posted receive still uses it
                return Ret(WSAEINVAL, 0)
        r.refs -= 1
        if r.refs == 0:
            self._last_reference(r)
        return Ret(OK, 0)

    @_spi()
    def deregister_rdma_memory(self, s: int, descriptor: bytes) -> Ret:
        """WSPDeregisterRdmaMemory: RDEREG-01..03."""
        self._state(s)
        r = next((r for r in self._regs if r.kind == RDMA and r.sock == s and r.refs > 0
                  and isinstance(descriptor, (bytes, bytearray)) and r.value == bytes(descriptor)), None)
        if r is None:
            return Ret(WSAEINVAL, 0)
        r.refs -= 1
        if r.refs == 0:
            self._revoke(r, self._eps.get(s))
            self._last_reference(r)
        return Ret(OK, 0)

    @_spi()
    def cache_callback(self, addr: int, size: int) -> Ret:
        """WSPMemoryRegistrationCacheCallback: CACHE-04, CACHE-05 (all or nothing)."""
        if not self.capabilities.has_cache:
            return Ret(WSAEOPNOTSUPP, 0)
        if not (_is_int(addr) and _is_int(size)):
            return Ret(WSAEINVAL, 0)
        hits = [r for r in self._regs if r.overlaps(addr, size)]
        if any(r.refs > 0 for r in hits):
            return Ret(WSAEFAULT, 0)
        if not hits:
            return Ret(WSAEINVAL, 0)
        for r in hits:
            self._table_drop(r)
            self._dereg_mr(r)  # unpins: after this the pages may be unmapped
        return Ret(OK, 0)

    # --- transfers (RDMA-*, XFER-*) ----------------------------------------------

    def _check_local(self, s: Any, buffers: Any, need: int, max_count: int | None) -> tuple[int, list]:
        """RDMA-02..04 / XFER-01 in order; (status, [(buf, registration)])."""
        state = self._state(s)
        if state == 0:
            return WSAENOTCONN, []
        if state == ERRORED:
            return WSAECONNABORTED, []
        if not isinstance(buffers, (list, tuple)):
            return WSAEINVAL, []
        if max_count is not None and not 1 <= len(buffers) <= max_count:
            return WSAEINVAL, []
        out = []
        for b in buffers:
            try:
                length, addr, handle = b
            except (TypeError, ValueError):
                return WSAEINVAL, []
            r = self._live_local(s, handle)
            if r is None:
                return WSAEINVAL, []
            if not (type(length) is int or _is_int(length)) or length < 1:
                return WSAEINVAL, []
            if not (type(addr) is int or _is_int(addr)) or addr < r.addr or addr + length > r.addr + r.length:
                return WSAEFAULT, []
            if not grants(r.flags, need):
                return WSAEINVAL, []
            out.append((WsaBufEx(length, addr, handle), r))
        return OK, out

    def _rdma(self, s: Any, buffers: Any, target: Any, offset: Any, write: bool) -> Ret:
        status, bufs = self._check_local(s, buffers, MEM_READ if write else MEM_WRITE, self.capabilities.max_sge)
        if status != OK:
            return Ret(status, 0)
        ep = self._eps[s]
        total = sum(b.len for b, _ in bufs)
        # RDMA-08 outcome (a): refuse at call time what the descriptor shows
        # to be wrong (not sealed for this connection, no permission, out of
        # range). What only the peer knows (revoked) is posted and refused
        # by its responder: outcome (b).
        fields = self._unseal(ep, target)
        if fields is None:
            return Ret(WSAEINVAL, 0)
        magic, version, flags, rkey, addr, length = fields
        if (magic != DESC_MAGIC or version != DESC_VERSION
                or flags not in (MEM_READ, MEM_WRITE, MEM_READWRITE)
                or not grants(flags, MEM_WRITE if write else MEM_READ)
                or not _is_int(offset) or offset < 0 or offset + total > length):
            return Ret(WSAEINVAL, 0)
        opcode = _e.IBV_WR_RDMA_WRITE if write else _e.IBV_WR_RDMA_READ
        wc = self._post(ep, opcode, bufs, rkey, addr + offset)
        if wc is not None and wc.status == _e.IBV_WC_SUCCESS:
            return Ret(OK, total)
        self._fail(ep)  # CONN-01: REM_ACCESS_ERR has put both QPs in ERR
        return Ret(WSAECONNRESET, 0)

    @staticmethod
    def _unseal(ep: _Endpoint, raw: Any) -> tuple | None:
        """``unseal`` under the peer's key, remembered per connection for
        the descriptors that were genuine (the MAC of the same bytes under
        the same key never changes); anything else is checked every time."""
        if type(raw) is bytes:
            fields = ep.unsealed.get(raw)
            if fields is not None:
                return fields
        fields = unseal(ep.peer_key, raw)
        if fields is not None and type(raw) is bytes:
            if len(ep.unsealed) >= 64:
                ep.unsealed.clear()
            ep.unsealed[raw] = fields
        return fields

    @_spi()
    def rdma_write(self, s: int, buffers: list[WsaBufEx], target: bytes, offset: int) -> Ret:
        """WSPRdmaWrite: RDMA-01..06, RDMA-08, CONN-01/02."""
        return self._rdma(s, buffers, target, offset, write=True)

    @_spi()
    def rdma_read(self, s: int, buffers: list[WsaBufEx], target: bytes, offset: int) -> Ret:
        """WSPRdmaRead: RDMA-07 (and as rdma_write). Absent when configured so (EXT-03)."""
        if not self.capabilities.has_rdma_read:
            return Ret(WSAEOPNOTSUPP, 0)
        return self._rdma(s, buffers, target, offset, write=False)

    @_spi()
    def send(self, s: int, buffers: list[WsaBufEx]) -> Ret:
        """WSPSend: XFER-01, XFER-03 (an overlong message fails both ends)."""
        status, bufs = self._check_local(s, buffers, MEM_READ, self.capabilities.max_sge)
        if status != OK:
            return Ret(status, 0)
        ep = self._eps[s]
        wc = self._post(ep, _e.IBV_WR_SEND, bufs, None, None)
        if wc is not None and wc.status == _e.IBV_WC_SUCCESS:
            return Ret(OK, sum(b.len for b, _ in bufs))
        self._fail(ep)
        return Ret(WSAECONNRESET, 0)

    @_spi()
    def recv(self, s: int, buffer: WsaBufEx) -> Ret:
        """WSPRecv: XFER-01, XFER-02 (posted, WSA_IO_PENDING)."""
        status, bufs = self._check_local(s, [buffer], MEM_WRITE, None)
        if status != OK:
            return Ret(status, 0)
        ep = self._eps[s]
        if ep.recv is not None:  # one posted receive per endpoint (the switch reaps first)
            return Ret(WSAEINVAL, 0)
        (b, r), = bufs
        wr_id = ep.next_wr
        ep.next_wr += 1
        ep.qp.post_recv(_RecvWR(wr_id=wr_id, num_sge=1, sg=[_SGE(b.buf, b.len, r.mr.lkey)]))
        ep.recv, ep.recv_result = (b.handle, b.buf, b.len, wr_id), None
        return Ret(WSA_IO_PENDING, 0)

    @_spi()
    def recv_done(self, s: int) -> Ret:
        """The posted receive's completion: (0, bytes), or
        WSA_OPERATION_ABORTED after a connection failure (CONN-01)."""
        self._state(s)
        ep = self._eps.get(s) if _is_int(s) else None
        if ep is None or ep.recv is None:
            return Ret(WSAEINVAL, 0)
        if ep.recv_result is None:
            self._poll_recv(ep, POLL_DEADLINE_S)
            if ep.recv_result is None:
                return Ret(WSA_IO_PENDING, 0)
        ret = ep.recv_result
        ep.recv, ep.recv_result = None, None
        return ret

    def _poll_recv(self, ep: _Endpoint, deadline_s: float) -> None:
        end = time.monotonic() + deadline_s
        while ep.recv is not None and ep.recv_result is None:
            n, wcs = ep.rcq.poll(1)
            if n and wcs[0].wr_id == ep.recv[3]:
                wc = wcs[0]
                if wc.status == _e.IBV_WC_SUCCESS:
                    ep.recv_result = Ret(OK, wc.byte_len)
                else:  # flushed or failed: the QP may be in ERR (``_state`` looks)
                    ep.recv_result = Ret(WSA_OPERATION_ABORTED, 0)
                    ep.suspect = True
            elif not n and time.monotonic() >= end:
                return

    # --- posting -------------------------------------------------------------

    def _poll_send(self, ep: _Endpoint, wr_id: int) -> Any:
        """The completion of ``wr_id`` (every send-side WR is signalled and
        waited for before the next is posted), or None at the deadline. A
        tight busy poll: the clock is read every 64 empty polls."""
        poll = ep.scq.poll
        end = time.monotonic() + POLL_DEADLINE_S
        spins = 0
        while True:
            n, wcs = poll(1)
            if n:
                if wcs[0].wr_id == wr_id:
                    return wcs[0]
                continue
            spins += 1
            if not spins & 63 and time.monotonic() >= end:
                return None

    def _post(self, ep: _Endpoint, opcode: int, bufs: list, rkey: int | None, remote: int | None) -> Any:
        """One signalled data WR, one SGE per WSABUFEX, in array order; the
        legacy post path (multi-SGE works there on librxe 44). The WR is a
        pure function of (opcode, SGEs, rkey, remote address), so one made
        before for the same values is posted again with a new ``wr_id``
        (``ibv_post_send`` copies it into the send queue)."""
        wr_id = ep.next_wr
        ep.next_wr += 1
        sg = tuple([(b.buf, b.len, r.mr.lkey) for b, r in bufs])
        key = (opcode, sg, rkey, remote)
        wr = ep.wrs.get(key)
        if wr is None:
            sges = [_SGE(a, n, lkey) for a, n, lkey in sg]
            wr = _SendWR(wr_id=wr_id, opcode=opcode, num_sge=len(sges), sg=sges, send_flags=_e.IBV_SEND_SIGNALED)
            if rkey is not None:
                wr.set_wr_rdma(rkey, remote)
            if len(ep.wrs) >= WR_CACHE:
                ep.wrs.clear()
            ep.wrs[key] = wr
        else:
            wr.wr_id = wr_id
        ep.qp.post_send(wr)
        return self._poll_send(ep, wr_id)

    def _post_ex(self, ep: _Endpoint, build: Callable[[Any], Any]) -> Any:
        """One signalled WR through the extended API (bind, local invalidate)."""
        wr_id = ep.next_wr
        ep.next_wr += 1
        qp = ep.qp
        qp.wr_start()
        qp.wr_id = wr_id
        qp.wr_flags = _e.IBV_SEND_SIGNALED
        build(qp)
        qp.wr_complete()
        return self._poll_send(ep, wr_id)

    @staticmethod
    def _state_of_qp(ep: _Endpoint) -> int:
        attr, _ = ep.qp.query(_e.IBV_QP_STATE)
        return attr.qp_state

    # --- teardown ----------------------------------------------------------------

    def shutdown(self) -> None:
        """Release everything, children first: windows, QPs, MRs, CQs, PD,
        context; then the memory if this provider made it. Idempotent."""
        for srv in self._listeners.values():
            srv.close()
        self._listeners.clear()
        for r in self._regs:
            try:
                r.close_window()
            except Exception as exc:  # noqa: BLE001  keep releasing the rest
                self.errors.append(f"shutdown: window: {exc}")
        for ep in self._eps.values():
            try:
                ep.close()
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f"shutdown: endpoint: {exc}")
        self._eps.clear()
        for r in self._regs:
            try:
                self._dereg_mr(r)
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f"shutdown: MR: {exc}")
        self._regs.clear()
        self._by_key.clear()
        self._by_handle.clear()
        for name in ("_pd", "_ctx"):
            obj = getattr(self, name)
            if obj is not None:
                setattr(self, name, None)
                try:
                    obj.close()
                except Exception as exc:  # noqa: BLE001  EBUSY: something above leaked
                    self.errors.append(f"shutdown: {name}: {exc}")
        if self._own_memory and not self._closed:
            self.memory.close()
        self._closed = True

    def __enter__(self) -> "VerbsProvider":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
