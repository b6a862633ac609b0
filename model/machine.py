"""The model run on concrete values: what tests, the lockstep harness and
``sanspi replay`` drive.

``Model.outcomes`` lists every allowed outcome of a call (one, except where
the SPI leaves the result open, RDMA-08); ``Model.outcome`` asks for one of
those by name (``AT_CALL``, ``REFUSED_BY_PEER`` in model/constants.py);
``Model.take`` takes one and advances. Both go through the transition functions in TRANSITIONS with
the concrete ops, so what runs here is exactly what the prover encodes.
"""

from __future__ import annotations

from typing import Any

import attrs

from sanspi.model.constants import AT_CALL, OUTCOMES
from sanspi.model.invariants import violations
from sanspi.model.ops import CONCRETE
from sanspi.model.state import Config, State, init_state
from sanspi.model.transitions import TRANSITIONS, Sge, Step


class NotEnabled(Exception):
    """The step's precondition does not hold: the environment may not take it.

    This is a misuse of the model by its driver (a test or harness), never an
    SPI result: bad SPI arguments are enabled steps with WSA error codes.
    """


class PropertyViolation(AssertionError):
    """A model invariant or step property failed: a bug in the model."""


def make_args(name: str, **kwargs: Any) -> Any:
    """Build a transition's argument record; ``sges`` may be given as
    ``(length, addr, handle)`` tuples, the WSABUFEX order."""
    t = TRANSITIONS[name]
    if "sges" in kwargs:
        kwargs["sges"] = tuple(s if isinstance(s, Sge) else Sge(length=s[0], addr=s[1], handle=s[2])
                               for s in kwargs["sges"])
    return t.args(**kwargs)


@attrs.define
class Model:
    cfg: Config = attrs.field(factory=Config)
    state: State = attrs.field(default=None)
    check: bool = True  # evaluate every invariant and step property on each step

    def __attrs_post_init__(self) -> None:
        if self.state is None:
            self.state = init_state(self.cfg)

    def outcomes(self, name: str, args: Any) -> list[Step]:
        """Every allowed outcome of ``name(args)`` from the current state, in
        the order of their names (AT_CALL first)."""
        steps = [self.outcome(name, args, which) for which in range(TRANSITIONS[name].choices)]
        return [s for s in steps if s is not None]

    def outcome(self, name: str, args: Any, which: int = AT_CALL) -> Step | None:
        """The outcome ``which`` (AT_CALL or REFUSED_BY_PEER, RDMA-08) of
        ``name(args)`` from the current state, or None if the model does not
        allow it here (a determined call has only AT_CALL)."""
        t = TRANSITIONS[name]
        if which not in OUTCOMES or (which != AT_CALL and t.choices == 1):
            return None
        a = attrs.evolve(args, choice=which) if t.choices > 1 else args
        step = t.fn(self.cfg, self.state, a, CONCRETE)
        if not step.enabled:
            return None
        if self.check:
            self._check(name, a, step)
        return step

    def enabled(self, name: str, args: Any) -> bool:
        return bool(self.outcomes(name, args))

    def take(self, step: Step) -> Step:
        self.state = step.next
        return step

    def call(self, name: str, **kwargs: Any) -> Step:
        """Run a call whose outcome is determined (or pick it with ``choice``)."""
        choice = kwargs.pop("choice", None)
        args = make_args(name, **kwargs)
        steps = self.outcomes(name, args)
        if not steps:
            raise NotEnabled(f"{name}({args}) is not enabled here")
        if choice is not None:
            step = self.outcome(name, args, choice)
            if step is None:
                raise NotEnabled(f"{name} has no outcome {OUTCOMES.get(choice, choice)!r} here")
            steps = [step]
        elif len(steps) > 1:
            raise NotEnabled(f"{name} has {len(steps)} allowed outcomes here: pass choice=")
        return self.take(steps[0])

    def _check(self, name: str, args: Any, step: Step) -> None:
        bad = violations(self.cfg, name, self.state, args, step)
        if bad:
            raise PropertyViolation(f"{name}({args}) breaks {', '.join(bad)}")

    # --- reading the state, for tests and reports --------------------------

    def memory(self, host: int, addr: int, length: int) -> bytes:
        return self.state.hosts[host].mem[addr : addr + length]
