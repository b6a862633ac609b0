"""The lockstep executor: one step runs on the model and on both hosts'
providers, and everything observable is compared.

Arguments are chosen in the model's terms, except handles and descriptors:
those are *references* (``Ref``) to values a provider really issued, live or
dead, of either host, or to garbage and forged values. The world turns a
reference into the provider's value, and that value into the model's id the
way the provider must read it (``ids.model_id``), so a provider free to
number its handles as it likes is still compared exactly.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable

import attrs

from sanspi.conform.coverage import Coverage, History, StepFacts, classify, outcome_key
from sanspi.impl.interface import Provider, RdmaRegistration, Ret, WsaBufEx
from sanspi.model import reasons as R
from sanspi.model.constants import (
    FN_UNKNOWN, GUIDS, OK, POINTER_SIZE, WSAEINVAL, wsa_name,
)
from sanspi.model.machine import Model, make_args
from sanspi.model.ops import CONCRETE, pattern_byte
from sanspi.model.state import Config
from sanspi.model.transitions import Sge, Step, endpoint_status
from sanspi.testing import ConnectError, connect

#: "Nothing to compare": the value a call hands back is not constrained by
#: the SPI (a deregistration, a posted receive) or not on this outcome (a
#: failure, except where a clause says what it returns: RREG-03). Never
#: ``None``: a provider answering ``None`` where the model predicts a value
#: is a divergence.
NOTHING = object()


#: The steps after which a connection's state may have changed (SOCK-01,
#: SOCK-02, CONN-01): after each, every connection is compared.
CONNECTION_STEPS = frozenset({"connect", "close", "rdma_write", "rdma_read", "send"})


@attrs.frozen
class Ref:
    """A handle or descriptor as the switch would pass it.

    ``issued``: the value a provider returned for model id ``rid``;
    ``garbage``: a value no provider issued; ``forged``: an issued
    descriptor with byte ``at`` XORed with ``mask``; ``resized``: an issued
    descriptor ``at`` bytes longer (negative: shorter; -10**6: empty).
    """

    how: str  # "issued", "garbage", "forged", "resized"
    rid: int = 0
    at: int = 0
    mask: int = 1

    def __repr__(self) -> str:
        if self.how == "forged":
            return f"Ref('forged', {self.rid}, at={self.at}" + (f", mask={self.mask:#x})" if self.mask != 1 else ")")
        if self.how == "resized":
            return f"Ref('resized', {self.rid}, at={self.at})"
        return f"Ref({self.how!r}, {self.rid})"


class Divergence(AssertionError):
    """The provider did not do what the model predicts."""


@attrs.define
class Ids:
    """Provider values <-> model ids, per host for handles, global for descriptors."""

    value_of: dict[int, Any] = attrs.field(factory=dict)  # model id -> provider value
    handle_id: list[dict] = attrs.field(factory=lambda: [{}, {}])  # per host: value -> model id
    desc_id: dict[bytes, int] = attrs.field(factory=dict)  # descriptor bytes -> model id

    def value(self, ref: Ref, descriptor: bool) -> Any:
        if ref.how == "issued" and ref.rid in self.value_of:
            return self.value_of[ref.rid]
        if ref.how == "forged" and isinstance(self.value_of.get(ref.rid), bytes):
            raw = bytearray(self.value_of[ref.rid])
            raw[ref.at % len(raw)] ^= (ref.mask % 256) or 1
            return bytes(raw)
        if ref.how == "resized" and isinstance(self.value_of.get(ref.rid), bytes):
            raw = self.value_of[ref.rid]
            if ref.at < 0:
                return raw[:max(0, len(raw) + ref.at)]
            return raw + bytes((0x5A + i) % 256 for i in range(ref.at))
        # garbage: nothing a provider is likely to issue
        return (b"\xa5" * 16 + ref.rid.to_bytes(8, "little")).ljust(32, b"\0") if descriptor else 0x5A5A_0000_0000 + ref.rid

    def model_id(self, host: int, value: Any, descriptor: bool) -> int:
        """What the model is asked about: the id this value means, if any."""
        if descriptor:
            return self.desc_id.get(value, 0) if isinstance(value, bytes) else 0
        try:
            return self.handle_id[host].get(value, 0)
        except TypeError:  # an unhashable handle is no handle of ours
            return 0


@attrs.define
class Logged:
    name: str
    args: dict
    status: int | None = None
    why: str = ""  # the clause behind the outcome (model/reasons.py)
    issued: int | None = None  # the model id a successful registration issued

    def __str__(self) -> str:
        call = f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.args.items())})"
        if self.status is None:
            return call
        out = f"{call} -> {wsa_name(self.status)}"
        if self.issued is not None:
            out += f", issued id {self.issued}"
        return out + (f"  [{self.why}]" if self.why else "")


class TimedModel:
    """The model, with the wall time of its calls added up in ``seconds``
    (``sanspi bench`` reports the model's share of a lockstep step).
    Everything else passes through to the model unchanged."""

    def __init__(self, model: Model) -> None:
        object.__setattr__(self, "inner", model)
        object.__setattr__(self, "seconds", 0.0)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                object.__setattr__(self, "seconds", self.seconds + time.perf_counter() - start)

        return timed

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.inner, name, value)


@attrs.define
class World:
    """The model and the providers of host 0 and host 1, in lockstep."""

    providers: tuple[Provider, Provider]
    cfg: Config
    model: Model = attrs.field(default=None)
    ids: Ids = attrs.field(factory=Ids)
    log: list[Logged] = attrs.field(factory=list)
    coverage: Coverage = attrs.field(factory=Coverage)
    history: History = attrs.field(factory=History)
    functions: list[dict] = attrs.field(factory=lambda: [{}, {}])
    issued: dict[int, tuple[int, bool]] = attrs.field(factory=dict)  # model id -> (host, is descriptor)
    registered: list[tuple] = attrs.field(factory=list)  # (name, host, sock, addr, length, flags) that succeeded
    _checked: tuple | None = attrs.field(default=None, init=False, repr=False)  # (args, outcomes) of _require
    step_seconds: float = 0.0  # wall time inside step(), model and providers together
    divergence: str | None = None  # set when a step diverged

    def __attrs_post_init__(self) -> None:
        if self.model is None:
            # the model's invariants are proved (sanspi prove); re-checking
            # them on every lockstep step would only slow the campaign
            self.model = Model(self.cfg, check=False)
        if not isinstance(self.model, TimedModel):
            self.model = TimedModel(self.model)
        for p in self.providers:
            if p.memory.pages < self.cfg.pages or p.memory.page_size != self.cfg.page_size:
                raise ValueError(f"{p.name}: its address space is smaller than the model's")
        self.history.bases = tuple(p.memory.base for p in self.providers)

    # --- helpers ---------------------------------------------------------------

    def addr(self, host: int, a: int) -> int:
        return self.providers[host].memory.base + a

    def _fn(self, host: int, fn: int) -> Callable:
        f = self.functions[host].get(fn)
        if f is None:
            ret = self.providers[host].get_extension_function(GUIDS[fn].bytes_le, POINTER_SIZE)
            if ret.status != OK or not callable(ret.value):
                raise Divergence(f"host {host}: no function for {GUIDS[fn]} ({wsa_name(ret.status)})")
            f = self.functions[host][fn] = ret.value
        return f

    @staticmethod
    def _call(fn: Callable, *args: Any) -> Ret:
        """Call into a provider; an exception crossing the SPI is a divergence."""
        try:
            ret = fn(*args)
        except Exception as exc:  # noqa: BLE001  any exception is the finding
            raise Divergence(f"{getattr(fn, '__name__', fn)} raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(ret, tuple) or len(ret) != 2 or not isinstance(ret[0], int):
            raise Divergence(f"{getattr(fn, '__name__', fn)} returned {ret!r}, not Ret(status, value)")
        return Ret(*ret)

    def _bufs(self, host: int, sges: tuple) -> tuple[list[WsaBufEx], tuple[Sge, ...]]:
        bufs, model = [], []
        for length, a, ref in sges:
            value = self.ids.value(ref, descriptor=False)
            bufs.append(WsaBufEx(length, self.addr(host, a), value))
            model.append(Sge(length=length, addr=a, handle=self.ids.model_id(host, value, False)))
        return bufs, tuple(model)

    def _require(self, name: str, margs: Any) -> None:
        """An environment step must be enabled before the provider sees it; the
        outcomes are kept for ``_outcome`` (the model's state is unchanged in
        between), so the model runs once per step."""
        steps = self.model.outcomes(name, margs)
        if not steps:
            raise RuntimeError(f"{name} is not enabled")
        self._checked = (margs, steps)

    def _outcome(self, name: str, margs: Any, status: int, result: Any = NOTHING, what: str = "") -> Step:
        """The model's outcome the provider's status selects; a divergence if
        none, or if the value handed back is not the model's (``result``;
        NOTHING: not compared)."""
        checked, self._checked = self._checked, None
        # the same argument record (each is made for one transition) means _require's outcomes
        steps = checked[1] if checked and checked[0] is margs else self.model.outcomes(name, margs)
        if not steps:
            raise RuntimeError(f"{name} is not enabled: the generator broke a precondition")
        matching = [s for s in steps if s.status == status]
        if not matching:
            allowed = " or ".join(f"{wsa_name(s.status)}" + (f" ({R.describe(s.why)})" if s.status != OK else "")
                                  for s in steps)
            raise Divergence(f"{name}{what}: provider returned {wsa_name(status)}, the model allows {allowed}")
        if result is not NOTHING and matching[0].result != result:
            raise Divergence(f"{name}{what}: provider handed back {result!r}, the model's value is "
                             f"{matching[0].result} ({R.describe(matching[0].why)})")
        pre = self.model.state
        step = self.model.take(matching[0])
        self.coverage.outcomes[outcome_key(name, status, step.why)] += 1
        facts = StepFacts(name, self.log[-1].args if self.log else {}, margs, pre, status, step.why, step.result,
                          step.next)
        self.coverage.behaviour.update(classify(self.cfg, facts, self.history))
        self.history.note(self.cfg, facts)
        if self.log:
            self.log[-1].why = R.describe(step.why) if step.why else ""
        return step

    def compare_connections(self) -> None:
        """The state of every connection on both hosts (CONN-01, CONN-02),
        read the one way the SPI shows it without changing anything: an RDMA
        write with no buffers answers WSAENOTCONN or WSAECONNABORTED on a
        closed or failed connection, and WSAEINVAL (no buffers, RDMA-03) on a
        live one. Not logged as a step: it is a check, like the bytes."""
        for h in (0, 1):
            if self.model.state.hosts[h].startups == 0:  # no function to call yet
                continue
            for s, ep in enumerate(self.model.state.hosts[h].eps):
                # the model's own CONN-02 reading of the endpoint, then RDMA-03's
                # count check (what rdma_write answers with no buffers, without
                # evaluating the whole transition on every connection)
                want = endpoint_status(CONCRETE, ep)
                want = WSAEINVAL if want == OK else want
                got = self._call(self._fn(h, 4), s, [], self.ids.value(Ref("garbage"), descriptor=True), 0).status
                if got != want:
                    raise Divergence(f"host {h} connection {s}: an RDMA write with no buffers gives {wsa_name(got)}, "
                                     f"the model's connection state gives {wsa_name(want)}")

    def compare_memory(self) -> None:
        """Every mapped byte of both hosts equals the model's (spec MEM-*, RDMA-06/07)."""
        ps = self.cfg.page_size
        for h, p in enumerate(self.providers):
            host = self.model.state.hosts[h]
            for page, mapped in enumerate(host.mapped):
                if not mapped:
                    continue
                want = host.mem[page * ps:(page + 1) * ps]
                got = p.memory.read(p.memory.base + page * ps, ps)
                if got != want:
                    i = next(i for i in range(ps) if got[i] != want[i])
                    raise Divergence(f"host {h} byte {page * ps + i} is {got[i]:#04x}, the model says {want[i]:#04x}")

    def _handle_result(self, host: int, rid: int, value: Any, descriptor: bool) -> None:
        """A registration's value must be stable per model id, fresh per new id."""
        if descriptor:
            if not isinstance(value, bytes) or not value:
                raise Divergence(f"host {host}: descriptor is {value!r}, not bytes")
            known = self.ids.desc_id.get(value)
        else:
            if value is None or value == 0:  # WSPRegisterMemory returns NULL only on failure (REG-01)
                raise Divergence(f"host {host}: registration {rid} succeeded with the NULL handle {value!r}")
            try:
                known = self.ids.handle_id[host].get(value)
            except TypeError:
                raise Divergence(f"host {host}: handle {value!r} is not hashable") from None
        if rid in self.ids.value_of and self.ids.value_of[rid] != value:
            raise Divergence(f"host {host}: registration {rid} came back as a different value "
                             f"(the model serves it from the cache or counts a reference)")
        if known is not None and known != rid:
            # REG-07: a handle or descriptor is never issued again; for a
            # descriptor also CACHE-03, RDEREG-02: a revoked one never works
            # again, so no later registration may be exposed under its bytes
            state = "live" if self._live(known) else "released"
            raise Divergence(f"host {host}: registration {rid} got the {'descriptor' if descriptor else 'handle'} "
                             f"of {state} registration {known} (REG-07: never issued again)")
        self.ids.value_of[rid] = value
        self.issued[rid] = (host, descriptor)
        if self.log:
            self.log[-1].issued = rid
        if descriptor:
            self.ids.desc_id[value] = rid
        else:
            self.ids.handle_id[host][value] = rid

    def _live(self, rid: int) -> bool:
        return any(sl.used and sl.refs > 0 and sl.rid == rid for h in self.model.state.hosts for sl in h.slots)

    # --- one step ----------------------------------------------------------------

    @property
    def model_seconds(self) -> float:
        """Wall time spent in the model's calls, all steps together."""
        return self.model.seconds

    def step(self, name: str, **args: Any) -> Step:
        start = time.perf_counter()
        try:
            self.log.append(Logged(name, dict(args)))
            step = getattr(self, f"_do_{name}")(**args)
            self.log[-1].status = step.status
            self.compare_memory()
            if name in CONNECTION_STEPS:
                self.compare_connections()
            return step
        except Divergence as exc:
            self.divergence = str(exc)  # this World's log is the divergence's trace
            raise
        finally:
            self.step_seconds += time.perf_counter() - start

    def _do_startup_ex(self, host, major, minor, data_ok=True, table_ok=True):
        margs = make_args("startup_ex", host=host, major=major, minor=minor, data_ok=data_ok, table_ok=table_ok)
        ret = self._call(self.providers[host].startup_ex, major | minor << 8, data_ok, table_ok)
        return self._outcome("startup_ex", margs, ret.status, ret.value if ret.status == OK else NOTHING,
                             " (version word)")

    def _do_get_extension(self, host, fn, outlen=POINTER_SIZE):
        guid = GUIDS[fn].bytes_le if fn in GUIDS else uuid.UUID(int=0xBAD0 + fn % 2**16).bytes_le
        margs = make_args("get_extension", host=host, fn=fn if fn in GUIDS else FN_UNKNOWN, outlen=outlen)
        ret = self._call(self.providers[host].get_extension_function, guid, outlen)
        step = self._outcome("get_extension", margs, ret.status)
        if ret.status == OK and not callable(ret.value):
            raise Divergence(f"host {host}: lookup succeeded but handed back {ret.value!r}, not a function")
        return step

    def _do_connect(self, conn):
        margs = make_args("connect", conn=conn)
        self._require("connect", margs)
        try:
            connect(*self.providers, conn)
        except ConnectError as exc:
            raise Divergence(str(exc)) from None
        except Exception as exc:  # noqa: BLE001  an exception out of listen/accept/connect is the finding
            raise Divergence(f"connection {conn}: {type(exc).__name__}: {exc}") from exc
        return self._outcome("connect", margs, OK)

    def _do_close(self, conn):
        margs = make_args("close", conn=conn)
        for p in self.providers:
            ret = self._call(p.close, conn)
            if ret.status != OK:
                raise Divergence(f"{p.name}: close({conn}) gave {wsa_name(ret.status)}")
        return self._outcome("close", margs, OK)

    def _do_alloc(self, host, page, npages):
        margs = make_args("alloc", host=host, page=page, npages=npages)
        self._require("alloc", margs)
        self.providers[host].memory.alloc(page, npages)
        return self._outcome("alloc", margs, OK)

    def _do_free(self, host, page, npages):
        margs = make_args("free", host=host, page=page, npages=npages)
        self._require("free", margs)
        status = OK
        if self.cfg.has_cache:  # the switch calls the callback first (MEM-04)
            ps = self.cfg.page_size
            status = self._call(self._fn(host, 6), self.addr(host, page * ps), npages * ps).status
        step = self._outcome("free", margs, status)
        self.providers[host].memory.free(page, npages)
        return step

    def _do_app_write(self, host, addr, length, seed):
        margs = make_args("app_write", host=host, addr=addr, length=length, seed=seed)
        self._require("app_write", margs)
        self.providers[host].memory.write(self.addr(host, addr), bytes(pattern_byte(seed, i) for i in range(length)))
        return self._outcome("app_write", margs, OK)

    def _do_register_memory(self, host, sock, addr, length, flags):
        self.registered.append(("register_memory", host, sock, addr, length, flags))
        margs = make_args("register_memory", host=host, sock=sock, addr=addr, length=length, flags=flags)
        ret = self._call(self._fn(host, 0), sock, self.addr(host, addr), length, flags)
        step = self._outcome("register_memory", margs, ret.status)
        if ret.status == OK:
            self._handle_result(host, step.result, ret.value, descriptor=False)
        return step

    def _do_deregister_memory(self, host, sock, handle: Ref):
        value = self.ids.value(handle, descriptor=False)
        margs = make_args("deregister_memory", host=host, sock=sock, rid=self.ids.model_id(host, value, False))
        return self._outcome("deregister_memory", margs, self._call(self._fn(host, 1), sock, value).status)

    def _do_register_rdma_memory(self, host, sock, addr, length, flags, desc_len):
        self.registered.append(("register_rdma_memory", host, sock, addr, length, flags))
        margs = make_args("register_rdma_memory", host=host, sock=sock, addr=addr, length=length, flags=flags,
                          desc_len=desc_len)
        ret = self._call(self._fn(host, 2), sock, self.addr(host, addr), length, flags, desc_len)
        out = ret.value if isinstance(ret.value, RdmaRegistration) else RdmaRegistration(None, -1)
        step = self._outcome("register_rdma_memory", margs, ret.status)
        if step.why == R.RREG_BLOCK_TOO_SMALL and out.length != step.result:  # RREG-03: the size needed
            raise Divergence(f"host {host}: descriptor block too small, provider says {out.length!r} bytes "
                             f"are needed, the model says {step.result}")
        if ret.status == OK:
            stored = len(out.descriptor) if isinstance(out.descriptor, bytes) else None
            if out.length != stored:
                raise Divergence(f"host {host}: descriptor length {out.length!r} but {stored} bytes")
            if stored > desc_len:
                raise Divergence(f"host {host}: a {stored}-byte descriptor stored in a block of {desc_len} (RREG-03)")
            self._handle_result(host, step.result, out.descriptor, descriptor=True)
        return step

    def _do_deregister_rdma_memory(self, host, sock, desc: Ref):
        value = self.ids.value(desc, descriptor=True)
        margs = make_args("deregister_rdma_memory", host=host, sock=sock, rid=self.ids.model_id(host, value, True))
        return self._outcome("deregister_rdma_memory", margs, self._call(self._fn(host, 3), sock, value).status)

    def _do_cache_callback(self, host, addr, size):
        margs = make_args("cache_callback", host=host, addr=addr, size=size)
        return self._outcome("cache_callback", margs, self._call(self._fn(host, 6), self.addr(host, addr), size).status)

    def _rdma(self, name, fn, host, sock, sges, desc: Ref, offset):
        bufs, msges = self._bufs(host, sges)
        value = self.ids.value(desc, descriptor=True)
        margs = make_args(name, host=host, sock=sock, sges=msges, desc=self.ids.model_id(host, value, True),
                          offset=offset)
        ret = self._call(self._fn(host, fn), sock, bufs, value, offset)
        return self._outcome(name, margs, ret.status, ret.value if ret.status == OK else NOTHING, " (bytes)")

    def _do_rdma_write(self, host, sock, sges, desc, offset):
        return self._rdma("rdma_write", 4, host, sock, sges, desc, offset)

    def _do_rdma_read(self, host, sock, sges, desc, offset):
        return self._rdma("rdma_read", 5, host, sock, sges, desc, offset)

    def _do_post_recv(self, host, sock, length, addr, handle: Ref):
        (buf,), (sge,) = self._bufs(host, ((length, addr, handle),))
        margs = make_args("post_recv", host=host, sock=sock, handle=sge.handle, addr=addr, length=length)
        self._require("post_recv", margs)
        return self._outcome("post_recv", margs, self._call(self.providers[host].recv, sock, buf).status)

    def _do_send(self, host, sock, sges):
        bufs, msges = self._bufs(host, sges)
        margs = make_args("send", host=host, sock=sock, sges=msges)
        self._require("send", margs)
        ret = self._call(self.providers[host].send, sock, bufs)
        return self._outcome("send", margs, ret.status, ret.value if ret.status == OK else NOTHING, " (bytes)")

    def _do_recv_done(self, host, sock):
        margs = make_args("recv_done", host=host, sock=sock)
        self._require("recv_done", margs)
        ret = self._call(self.providers[host].recv_done, sock)
        return self._outcome("recv_done", margs, ret.status, ret.value, " (bytes received)")
