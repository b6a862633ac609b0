"""Host 1 of a two-host campaign, in its own lab guest, driven over TCP.

``sanspi conform --provider rxe --topology two-host`` runs in both guests of
``sanspi lab run --topology two-host``. Guest 0 runs the World (the model,
Hypothesis and host 0's VerbsProvider); guest 1 runs ``serve``: a small
agent that owns host 1's provider and answers calls on it. In guest 0,
``RemoteProvider`` stands in for host 1: it implements the provider
interface (impl/interface.py) by sending each call to the agent. So the
World, the state machine and the campaign are the ones the loopback run
uses, while the two hosts' RDMA crosses the guests' link for real.

The wire: each message is a 4-byte big-endian length and a pickle. Pickle
executes what it loads, so it is only fit for a trusted peer: the lab's
private link (10.78.0.0/24) exists only between the two guests this project
boots, and nothing else can reach it. Never serve on a shared network.

Requests (``op``, ``args``):

* ``hello``: the agent's kernel and device (for the report);
* ``new`` (pages): a fresh provider for host 1, after shutting down the
  previous one; answers its generation, name, capabilities and memory shape;
* ``call`` (generation, target, method, args, kwargs): one call on the
  provider (target ``provider``), its memory (``memory``) or an extension
  function it handed out (``fn:<index>``);
* ``bye``: shut down and exit 0.

A provider or memory exception goes back as ``("err", ...)`` and is raised
again in guest 0, where the World reports it as a divergence; the agent
keeps serving. A link that drops or stays silent ends the agent with
``AgentError`` (exit status 1), so guest 1 never outlives guest 0 for long.
"""

from __future__ import annotations

import os
import pickle
import platform
import socket
import struct
import threading
import time
from typing import Any, Callable

from sanspi.impl.interface import Capabilities, Provider, Ret

#: The agent's TCP port on guest 1's lab address (the two-host rxe tests use
#: 18515 and 18517; a port of their own avoids a TIME_WAIT clash).
PORT = 18530
#: Guest 0 may start its campaign tens of seconds before or after guest 1 is
#: up (two guests boot in parallel under TCG, up to ~90 s on a busy host).
CONNECT_DEADLINE_S = 300.0
#: Longest silence the agent accepts before deciding guest 0 is gone (a
#: guest 0 whose process dies closes the link at once; this is for one that
#: hangs). Legitimate gaps between two calls to host 1: a host-0-only
#: stretch of a step (an accept waits at most 120 s, impl/verbs.py), and
#: z3's outcome targets computed in guest 0 before the campaign (3 s on
#: the host, tens of seconds under TCG).
IDLE_DEADLINE_S = 600.0
#: Longest wait for one answer: the longest call is connect (at most 120 s).
CALL_DEADLINE_S = 300.0

_LEN = struct.Struct("!I")


class AgentError(Exception):
    """The agent's link failed (not a provider's fault): one line for the user."""


class AgentLost(ConnectionError):
    """Guest 0 lost the link to host 1's agent in the middle of a campaign.

    The World turns it into a divergence like any provider exception (and
    Hypothesis cannot be stopped cleanly from inside a step), so whoever runs
    the campaign checks ``AgentLink.lost`` afterwards: a lost link is a
    broken lab, not a finding about the provider.
    """


class RemoteError(Exception):
    """A provider exception on host 1 that could not travel as itself."""


# --- framing ---------------------------------------------------------------


def _send(sock: socket.socket, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_LEN.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the peer closed the link")
        buf += chunk
    return bytes(buf)


def _recv(sock: socket.socket) -> Any:
    (n,) = _LEN.unpack(_recv_exact(sock, _LEN.size))
    return pickle.loads(_recv_exact(sock, n))


def _portable(exc: BaseException) -> tuple:
    """An exception as it can travel: itself if it pickles both ways, else
    its type's name and message."""
    try:
        blob = pickle.dumps(exc)
        pickle.loads(blob)
    except Exception:  # noqa: BLE001  any exception type may fail to (un)pickle
        blob = None
    return blob, type(exc).__name__, str(exc)


def _rebuilt(blob: bytes | None, type_name: str, message: str) -> Exception:
    if blob is not None:
        try:
            exc = pickle.loads(blob)
            if isinstance(exc, Exception):
                return exc
        except Exception:  # noqa: BLE001  a class guest 0 cannot import: fall back to the text
            pass
    return RemoteError(f"{type_name}: {message}")


# --- the agent (guest 1) -------------------------------------------------------


def environment() -> dict[str, str]:
    """What the report says about this host."""
    return {"kernel": os.environ.get("SANSPI_LAB_KERNEL", platform.release()),
            "device": os.environ.get("SANSPI_LAB_DEVICE", "none")}


def serve(addr: str, port: int = PORT, factory: Callable[[int], Provider] | None = None, *,
          accept_s: float = CONNECT_DEADLINE_S, idle_s: float = IDLE_DEADLINE_S,
          on_listen: Callable[[int], None] | None = None) -> int:
    """Serve one connection from guest 0 until ``bye`` (returns 0).

    ``factory(pages)`` makes host 1's provider (default: the verbs provider,
    conform/providers.py); the host tests pass one of software providers.
    ``on_listen`` hears the port bound (``port=0`` picks a free one).
    Raises AgentError when nobody connects within ``accept_s``, or the link
    drops or stays silent for ``idle_s`` before ``bye``.
    """
    if factory is None:
        from sanspi.conform.providers import rxe_host1

        factory = rxe_host1
    with socket.create_server((addr, port)) as srv:
        srv.settimeout(accept_s)
        if on_listen is not None:
            on_listen(srv.getsockname()[1])
        try:
            conn, _ = srv.accept()
        except OSError as exc:  # socket.timeout is an OSError
            raise AgentError(f"host 0 did not connect to {addr}:{srv.getsockname()[1]} within "
                             f"{accept_s:.0f} s ({exc or 'timed out'})") from None
    with conn:
        conn.settimeout(idle_s)
        return _Agent(factory).loop(conn)


class _Agent:
    def __init__(self, factory: Callable[[int], Provider]) -> None:
        self.factory = factory
        self.provider: Provider | None = None
        self.generation = 0
        self.functions: list[Callable] = []  # extension functions handed out, by index

    def _retire(self) -> None:
        p, self.provider = self.provider, None
        self.functions = []
        if p is not None:
            p.shutdown()

    def loop(self, conn: socket.socket) -> int:
        try:
            while True:
                try:
                    op, args = _recv(conn)
                except (OSError, ConnectionError, EOFError, pickle.UnpicklingError) as exc:
                    raise AgentError(f"the link to host 0 failed before bye: {exc or 'timed out'}") from None
                if op == "bye":
                    self._retire()
                    _send(conn, ("ok", None))
                    return 0
                try:
                    reply = ("ok", self.handle(op, args))
                    pickle.dumps(reply)
                except Exception as exc:  # noqa: BLE001  it travels back; the agent keeps serving
                    reply = ("err", *_portable(exc))
                try:
                    _send(conn, reply)
                except OSError as exc:
                    raise AgentError(f"the link to host 0 failed: {exc}") from None
        finally:
            self._retire()

    def handle(self, op: str, args: tuple) -> Any:
        if op == "hello":
            return environment()
        if op == "new":
            (pages,) = args
            self._retire()
            self.provider = self.factory(pages)
            self.generation += 1
            m = self.provider.memory
            return (self.generation, self.provider.name, self.provider.capabilities,
                    (m.base, m.page_size, m.pages))
        if op == "call":
            generation, target, method, a, kw = args
            if method == "shutdown" and generation != self.generation:
                return None  # already shut down when it was replaced (shutdown is idempotent)
            if generation != self.generation or self.provider is None:
                raise RuntimeError(f"host 1's provider {generation} was shut down or replaced")
            if target == "provider":
                fn = getattr(self.provider, method)
            elif target == "memory":
                fn = getattr(self.provider.memory, method)
            else:
                fn = self.functions[int(target.split(":", 1)[1])]
            value = fn(*a, **kw)
            if target == "provider" and method == "get_extension_function" \
                    and isinstance(value, tuple) and len(value) == 2 and callable(value[1]):
                # a function pointer cannot cross: hand out its index instead
                self.functions.append(value[1])
                value = Ret(value[0], _Function(len(self.functions) - 1,
                                                getattr(value[1], "__name__", "extension_function")))
            return value
        raise ValueError(f"unknown request {op!r}")


class _Function:
    """An extension function of host 1 as it travels: its index and name."""

    def __init__(self, index: int, name: str) -> None:
        self.index, self.name = index, name


# --- the client (guest 0) -------------------------------------------------------


class AgentLink:
    """Guest 0's end of the link: one call in flight at a time (the World's
    accept thread only ever calls host 0, but a lock costs nothing)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.lost: str | None = None  # why the link failed, if it did
        self.closed = False  # bye was said

    def call(self, op: str, *args: Any) -> Any:
        with self.lock:
            if self.lost is not None or self.closed:
                raise AgentLost(self.lost or "bye was said to host 1's agent")
            try:
                _send(self.sock, (op, args))
                reply = _recv(self.sock)
            except (OSError, ConnectionError, EOFError, pickle.UnpicklingError) as exc:
                # every later call fails at once: the rest of the campaign
                # (Hypothesis shrinking a "divergence") takes no time
                self.lost = f"the link to host 1's agent failed during {op}: {exc or 'timed out'}"
                self.sock.close()
                raise AgentLost(self.lost) from None
        if reply[0] == "ok":
            return reply[1]
        raise _rebuilt(*reply[1:])

    def bye(self) -> None:
        """Let the agent exit 0; quietly nothing if the link is gone already
        or bye was said (the CLI says it after the campaign and again on
        any way out)."""
        if self.lost is not None or self.closed:
            return
        try:
            self.call("bye")
        except AgentLost:
            pass
        finally:
            self.closed = True
            self.sock.close()


def connect(addr: str, port: int = PORT, deadline_s: float = CONNECT_DEADLINE_S) -> AgentLink:
    """Reach the agent, retrying until it listens (guest 1 may boot later)."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            sock = socket.create_connection((addr, port), timeout=5)
            break
        except OSError as exc:
            if time.monotonic() > end:
                raise AgentError(f"host 1's agent did not answer on {addr}:{port} within "
                                 f"{deadline_s:.0f} s ({exc})") from None
            time.sleep(0.5)
    sock.settimeout(CALL_DEADLINE_S)
    return AgentLink(sock)


class RemoteMemory:
    """Host 1's address space (impl.interface.AddressSpace) over the link."""

    def __init__(self, provider: "RemoteProvider", base: int, page_size: int, pages: int) -> None:
        self._p = provider
        self.base, self.page_size, self.pages = base, page_size, pages

    def alloc(self, page: int, npages: int) -> None:
        self._p._call("memory", "alloc", page, npages)

    def free(self, page: int, npages: int) -> None:
        self._p._call("memory", "free", page, npages)

    def write(self, addr: int, data: bytes) -> None:
        self._p._call("memory", "write", addr, data)

    def read(self, addr: int, length: int) -> bytes:
        return self._p._call("memory", "read", addr, length)


class RemoteProvider:
    """Host 1's provider (impl.interface.Provider), run by the agent.

    Making one asks the agent for a fresh provider (the previous one is shut
    down there), so each Hypothesis example gets a new host 1 as it gets a
    new host 0.
    """

    def __init__(self, link: AgentLink, pages: int) -> None:
        self._link = link
        self._generation, self.name, caps, (base, page_size, npages) = link.call("new", pages)
        self.capabilities: Capabilities = caps
        self.memory = RemoteMemory(self, base, page_size, npages)
        self._down = False

    def _call(self, target: str, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._link.call("call", self._generation, target, method, args, kwargs)

    def _function(self, f: _Function) -> Callable:
        def remote(*args: Any) -> Any:
            return self._call(f"fn:{f.index}", "", *args)

        remote.__name__ = remote.__qualname__ = f.name
        return remote

    def startup_ex(self, version: int, wsp_data: bool = True, proc_table: bool = True) -> Ret:
        return self._call("provider", "startup_ex", version, wsp_data, proc_table)

    def get_extension_function(self, guid: bytes, out_len: int = 8) -> Ret:
        ret = self._call("provider", "get_extension_function", guid, out_len)
        if isinstance(ret, tuple) and len(ret) == 2 and isinstance(ret[1], _Function):
            return Ret(ret[0], self._function(ret[1]))
        return ret

    def listen(self, s: int) -> bytes:
        return self._call("provider", "listen", s)

    def accept(self, s: int) -> Ret:
        return self._call("provider", "accept", s)

    def connect(self, s: int, token: bytes) -> Ret:
        return self._call("provider", "connect", s, token)

    def close(self, s: int) -> Ret:
        return self._call("provider", "close", s)

    def register_memory(self, s: int, buf: int, length: int, flags: int) -> Ret:
        return self._call("provider", "register_memory", s, buf, length, flags)

    def deregister_memory(self, s: int, handle: Any) -> Ret:
        return self._call("provider", "deregister_memory", s, handle)

    def register_rdma_memory(self, s: int, buf: int, length: int, flags: int, descriptor_length: int) -> Ret:
        return self._call("provider", "register_rdma_memory", s, buf, length, flags, descriptor_length)

    def deregister_rdma_memory(self, s: int, descriptor: bytes) -> Ret:
        return self._call("provider", "deregister_rdma_memory", s, descriptor)

    def cache_callback(self, addr: int, size: int) -> Ret:
        return self._call("provider", "cache_callback", addr, size)

    def rdma_write(self, s: int, buffers: list, target: bytes, offset: int) -> Ret:
        return self._call("provider", "rdma_write", s, buffers, target, offset)

    def rdma_read(self, s: int, buffers: list, target: bytes, offset: int) -> Ret:
        return self._call("provider", "rdma_read", s, buffers, target, offset)

    def send(self, s: int, buffers: list) -> Ret:
        return self._call("provider", "send", s, buffers)

    def recv(self, s: int, buffer: Any) -> Ret:
        return self._call("provider", "recv", s, buffer)

    def recv_done(self, s: int) -> Ret:
        return self._call("provider", "recv_done", s)

    def shutdown(self) -> None:
        """Idempotent; on a dead link there is nothing left to release here
        (the agent shuts its provider down when the link drops)."""
        if self._down:
            return
        self._down = True
        try:
            self._call("provider", "shutdown")
        except AgentLost:
            pass
