"""Traces: a sequence of transitions with concrete arguments from Init.

A trace is what BMC finds and what ``sanspi replay`` runs. ``replay`` runs it
on the executable model, records each step's outcome and finds the first
step that breaks an invariant, a step property or the frame condition.
``render`` prints it as mypyvy prints traces: the state's true facts, then
each transition with its arguments and what it changed.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from sanspi.model.constants import wsa_name
from sanspi.model.invariants import violations
from sanspi.model.ops import CONCRETE
from sanspi.model.state import Config, Endpoint, State, init_state
from sanspi.model.transitions import TRANSITIONS, Sge

FORMAT = "sanspi-trace/1"
#: A replay holds each host's memory as bytes: sizes past these are refused
#: as not a trace sanspi wrote (the proofs use kilobytes, campaigns 32 KiB).
MAX_MEMSIZE = 1 << 26
MAX_COUNT = 1 << 12


@attrs.frozen
class TraceStep:
    transition: str
    args: Any
    status: int | None = None  # filled in by replay
    result: int | None = None
    broken: tuple[str, ...] = ()


@attrs.frozen
class Trace:
    config: Config
    steps: tuple[TraceStep, ...]
    valid: bool = True  # every step was enabled when replayed
    note: str = ""

    @property
    def violation(self) -> tuple[int, tuple[str, ...]] | None:
        for n, st in enumerate(self.steps):
            if st.broken:
                return n, st.broken
        return None


class TraceError(ValueError):
    """A trace file that cannot be read: named in one line."""


def replay(trace: Trace, transitions: dict | None = None, invariants: dict | None = None,
           properties: dict | None = None) -> Trace:
    """Run the trace on the concrete model; stop after the first violation."""
    transitions = TRANSITIONS if transitions is None else transitions
    cfg = trace.config
    state = init_state(cfg)
    done = []
    for n, st in enumerate(trace.steps):
        t = transitions[st.transition]
        step = t.fn(cfg, state, st.args, CONCRETE)
        if not step.enabled:
            return Trace(cfg, tuple(done) + trace.steps[n:], False, f"step {n + 1} ({st.transition}) is not enabled")
        broken = tuple(violations(cfg, st.transition, state, st.args, step, invariants, properties))
        done.append(attrs.evolve(st, status=step.status, result=step.result, broken=broken))
        state = step.next
        if broken:
            break
    return Trace(cfg, tuple(done), True)


# --- text ---------------------------------------------------------------------


def facts(s: State) -> list[str]:
    """The state's true facts, compactly: what is started, mapped, registered, connected."""
    out = [f"next_id={s.next_id}"]
    for h, host in enumerate(s.hosts):
        if host.startups:
            out.append(f"host{h}: started x{host.startups}")
        pages = [str(p) for p, m in enumerate(host.mapped) if m]
        if pages:
            out.append(f"host{h}: pages {','.join(pages)} mapped")
        for i, sl in enumerate(host.slots):
            if sl.used:
                kind = {1: "local", 2: "rdma"}.get(sl.kind, f"kind{sl.kind}")
                state = "cached" if sl.refs == 0 else f"refs={sl.refs}"
                out.append(f"host{h}: slot{i} {kind} id={sl.rid} sock={sl.sock} "
                           f"[{sl.addr}, +{sl.length}) flags={sl.flags} {state}")
        for i, ep in enumerate(host.eps):
            if ep != Endpoint():
                fields = ", ".join(f"{f.name}={getattr(ep, f.name)}" for f in attrs.fields(Endpoint)
                                   if getattr(ep, f.name) != f.default)
                out.append(f"host{h}: ep{i} {fields}")
    return out


def diff(a: State, b: State) -> list[str]:
    before, after = set(facts(a)), set(facts(b))
    lines = [f"- {f}" for f in facts(a) if f not in after] + [f"+ {f}" for f in facts(b) if f not in before]
    for h in range(len(a.hosts)):
        ma, mb = a.hosts[h].mem, b.hosts[h].mem
        if ma != mb:
            changed = [i for i, (x, y) in enumerate(zip(ma, mb)) if x != y]
            lines.append(f"~ host{h}: memory bytes [{changed[0]}..{changed[-1]}] changed ({len(changed)} bytes)")
    return lines


def call_text(st: TraceStep) -> str:
    fields = []
    for f in attrs.fields(type(st.args)):
        v = getattr(st.args, f.name)
        if f.name == "sges":
            v = "[" + ", ".join(f"(h={x.handle}, {x.addr}, +{x.length})" for x in v) + "]"
        fields.append(f"{f.name}={v}")
    return f"{st.transition}({', '.join(fields)})"


def render(trace: Trace) -> str:
    state = init_state(trace.config)
    lines = ["state 0 (Init):"] + [f"  {f}" for f in facts(state)]
    for n, st in enumerate(trace.steps):
        step = TRANSITIONS[st.transition].fn(trace.config, state, st.args, CONCRETE)
        outcome = "" if st.status is None else f" -> {wsa_name(st.status)}, result {st.result}"
        lines.append(f"step {n + 1}: {call_text(st)}{outcome}")
        lines += [f"  {d}" for d in diff(state, step.next)]
        if st.broken:
            lines.append(f"  BREAKS: {', '.join(st.broken)}")
        state = step.next
    if not trace.valid:
        lines.append(f"invalid trace: {trace.note}")
    return "\n".join(lines)


# --- files ----------------------------------------------------------------------


def _plain(x: Any) -> Any:
    if attrs.has(type(x)):
        return {f.name: _plain(getattr(x, f.name)) for f in attrs.fields(type(x))}
    if isinstance(x, tuple):
        return [_plain(v) for v in x]
    return x


def dumps(trace: Trace) -> str:
    return json.dumps({
        "format": FORMAT,
        "config": _plain(trace.config),
        "steps": [{"transition": st.transition, "args": _plain(st.args),
                   "expect": {"status": st.status, "result": st.result, "broken": list(st.broken)}}
                  for st in trace.steps],
    }, indent=1)


def _checked(cls: type, values: dict, where: str) -> dict:
    """Refuse values whose type differs from the field's default (ints, bools,
    version pairs), so a bad file is named here, not deep inside a replay."""
    for f in attrs.fields(cls):
        if f.name not in values:
            continue
        v, d = values[f.name], (0 if f.default is attrs.NOTHING else f.default)
        ok = isinstance(v, bool) if isinstance(d, bool) else (
            isinstance(v, int) and not isinstance(v, bool) if isinstance(d, int) else True)
        if isinstance(d, tuple):
            ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) for x in v)
            values[f.name] = tuple(v) if ok else v
        if not ok:
            raise TraceError(f"malformed trace: {where}.{f.name} = {v!r}")
    return values


def loads(text: str) -> Trace:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceError(f"not JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TraceError(f"not a {FORMAT} trace (no \"format\": \"{FORMAT}\")")
    try:
        cfg = Config(**_checked(Config, dict(data["config"]), "config"))
        if min(cfg.pages, cfg.page_size, cfg.slots, cfg.sockets, cfg.max_sge) < 1:
            raise TraceError("malformed trace: config sizes must be positive")
        if cfg.memsize > MAX_MEMSIZE or max(cfg.slots, cfg.sockets, cfg.max_sge, cfg.descriptor_size) > MAX_COUNT:
            raise TraceError(f"malformed trace: config sizes beyond what a replay holds ({cfg.pages} pages of "
                             f"{cfg.page_size} bytes, at most {MAX_MEMSIZE} bytes; tables of at most {MAX_COUNT})")
        if not isinstance(data["steps"], list):
            raise TraceError("malformed trace: steps is not a list")
        steps = []
        for n, raw in enumerate(data["steps"], 1):
            name = raw["transition"]
            if name not in TRANSITIONS:
                raise TraceError(f"step {n}: unknown transition {name!r}")
            args = dict(raw["args"])
            for f in attrs.fields(TRANSITIONS[name].args):
                v = args.get(f.name)
                if f.name == "sges":
                    args["sges"] = tuple(Sge(**_checked(Sge, dict(x), f"step {n}.sges")) for x in v)
                elif not isinstance(v, int):  # every other argument is an int or a bool
                    raise TraceError(f"malformed trace: step {n}: {f.name} = {v!r}")
            expect = raw.get("expect") or {}
            steps.append(TraceStep(name, TRANSITIONS[name].args(**args), expect.get("status"),
                                   expect.get("result"), tuple(expect.get("broken", ()))))
    except TraceError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise TraceError(f"malformed trace: {type(exc).__name__}: {exc}") from None
    return Trace(cfg, tuple(steps))
