"""Call policies: the idle reprompt, the maximum call length, the cost budget, ending after a goodbye.

Theory of operation
-------------------
Four small machines (tables in :mod:`engine.core.policy_states`, registered in
``MACHINES``), stepped by :class:`CallPolicies` from the events the core emits
and from its own timers. Pure: time is read from the clock passed in, timers
are :class:`~engine.core.effects.ArmTimer` effects, and what a policy wants
done is a value the runtime carries out (:class:`Say`: ask for a response with
a short instruction; :class:`Hangup`: end the session with a reason). They
work whether or not the provider has an idle timeout of its own.

* **idle** (:class:`Idle`): ``listening`` while the conversation is
  ``session_ready`` (the idle timer runs), ``paused`` while anyone has the
  floor. Silence for ``idle_after`` seconds reprompts (up to ``reprompts``
  times; the user speaking resets the count), then asks for a goodbye.
* **call_clock** (:class:`CallClock`): from the first ready session,
  ``running`` until ``max_duration - warn_before`` (the warning is spoken),
  ``warned`` until ``max_duration``, then the call ends.
* **budget** (:class:`Budget`): from the first ready session, ``running``
  while the turns' costs (``TurnMetrics.cost``, from the profile's price
  table) are counted; ``warned`` once they reach ``budget_warning_at`` of the
  budget (the notice is spoken); when the next turn, at the average cost per
  turn so far, would exceed the budget: ``done`` with a goodbye (the call
  ends as below, reason ``budget``), or with ``budget_action="rollover"``
  ``rolling``: the notice is spoken, the server session is rolled over
  (:class:`RollOver`, at the next turn boundary) and once it is back
  (``Reconnected``) the count starts again. Without a price table no turn is
  priced: it never triggers.
* **hangup** (:class:`Hangup`): ``goodbye`` once a goodbye is asked for (or
  the model called the opt-in ``end_call`` tool: its response is the goodbye
  if it spoke, else the follow-up after the tool's output); ``draining`` once
  that response is done, until its audio has been *played*: acknowledged by
  the player (:meth:`CallPolicies.played`) or, with no acknowledgements, by
  the estimate (the audio's length from its first chunk, plus
  ``drain_margin``); then ``ended`` with :class:`HangupCall`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Literal

import attrs

from engine.core import events as ev
from engine.core.effects import ArmTimer, CancelTimer
from engine.core.machine import fire, plan_of, shared
from engine.core.policy_states import (
    BUDGET_TRANSITIONS,
    CALL_CLOCK_TRANSITIONS,
    HANGUP_TRANSITIONS,
    IDLE_TRANSITIONS,
    Budget,
    CallClock,
    Hangup,
    Idle,
)
from engine.core.states import State

__all__ = [
    "END_CALL_TOOL",
    "CallPolicies",
    "CallPolicy",
    "Hangup",
    "HangupCall",
    "PolicyEffect",
    "RollOver",
    "Say",
]

IDLE_TIMER, WARN_TIMER, LIMIT_TIMER, DRAIN_TIMER = (
    "policy.idle",
    "policy.warn",
    "policy.limit",
    "policy.drain",
)

END_CALL_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "end_call",
    "description": "End the call. Say goodbye first, in the same response.",
    "parameters": {"type": "object", "properties": {}},
}
"""The built-in tool's declaration (added to the session's tools when ``end_call`` is on)."""


def _positive_or_none(_: object, attribute: attrs.Attribute[float | None], value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be > 0 seconds or None, got {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float | int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _fraction(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


def _positive_amount(_: object, attribute: attrs.Attribute[float | None], value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be > 0 (the price table's currency) or None, got {value!r}")


@attrs.frozen(kw_only=True)
class CallPolicy:
    """What ends a call by itself, and what is said first. Everything is off by default.

    Args:
        idle_after: seconds of silence in ``session_ready`` before a reprompt (``None``: off).
        reprompts: reprompts before the goodbye.
        reprompt_instructions: the instruction of a reprompt response.
        goodbye_instructions: the instruction of the goodbye response.
        max_duration: the longest call, in seconds from the first ready session (``None``: off).
        warn_before: seconds before ``max_duration`` the warning is spoken (0: no warning).
        warning_instructions: the instruction of the warning response.
        end_call: offer the model the built-in ``end_call`` tool.
        drain_margin: seconds added to the estimated end of the goodbye's audio.
        budget: the most a call may cost, in the price table's currency (``None``: off; needs
            the provider profile's ``prices``, else no turn is priced and it never triggers).
        budget_action: when the next turn would exceed it: ``"end"`` the call after a goodbye, or
            ``"rollover"`` to a fresh server session after a notice (the budget counts anew).
        budget_warning_at: the fraction of the budget at which the warning is spoken (0: none).
        budget_warning_instructions: the instruction of the warning response.
        budget_goodbye_instructions: the instruction of the goodbye when the budget is spent.
        budget_rollover_instructions: the instruction of the notice before a rollover.
    """

    idle_after: float | None = attrs.field(default=None, validator=_positive_or_none)
    reprompts: int = attrs.field(default=1, validator=attrs.validators.ge(0))
    reprompt_instructions: str = "The user has been silent. Briefly ask whether they are still there."
    goodbye_instructions: str = "The user is not answering. Say a short goodbye."
    max_duration: float | None = attrs.field(default=None, validator=_positive_or_none)
    warn_before: float = attrs.field(default=30.0, validator=_non_negative)
    warning_instructions: str = "The call is about to end. Tell the user briefly, and wrap up."
    end_call: bool = False
    drain_margin: float = attrs.field(default=0.25, validator=_non_negative)
    budget: float | None = attrs.field(default=None, validator=_positive_amount)
    budget_action: Literal["end", "rollover"] = attrs.field(
        default="end", validator=attrs.validators.in_(("end", "rollover"))
    )
    budget_warning_at: float = attrs.field(default=0.8, validator=_fraction)
    budget_warning_instructions: str = "The call is close to its cost limit. Tell the user briefly."
    budget_goodbye_instructions: str = "The call has reached its cost limit. Tell the user, and say goodbye."
    budget_rollover_instructions: str = "Tell the user briefly that you are starting a fresh session."


@attrs.frozen
class Say:
    """Ask for a response with this short instruction (a reprompt, a warning, a goodbye)."""

    instructions: str


@attrs.frozen
class HangupCall:
    """End the session: ``reason`` names the policy (``idle``, ``max_duration``, ``end_call``, ``budget``)."""

    reason: str


@attrs.frozen
class RollOver:
    """Roll the server session over at the next turn boundary (the budget's ``rollover``)."""


PolicyEffect = ArmTimer | CancelTimer | Say | HangupCall | RollOver


class _Model:
    """One machine's model: its ``state``, the guards and actions its table names."""

    def __init__(self, owner: CallPolicies, initial: enum.StrEnum) -> None:
        self.state: str = initial.value
        self._owner = owner

    def __getattr__(self, name: str) -> Callable[[], object]:
        return getattr(self._owner, f"_{name}")  # type: ignore[no-any-return]


class CallPolicies:
    """One session's call policies, stepped from the core's events and the policy timers."""

    def __init__(self, policy: CallPolicy, clock: Callable[[], float]) -> None:
        self.policy = policy
        self._clock = clock
        self.idle = _Model(self, Idle.PAUSED)
        self.call_clock = _Model(self, CallClock.OFF)
        self.budget = _Model(self, Budget.OFF)
        self.hangup = _Model(self, Hangup.NONE)
        self._plans = {
            "idle": plan_of(shared(Idle, IDLE_TRANSITIONS, Idle.PAUSED)),
            "call_clock": plan_of(shared(CallClock, CALL_CLOCK_TRANSITIONS, CallClock.OFF)),
            "budget": plan_of(shared(Budget, BUDGET_TRANSITIONS, Budget.OFF)),
            "hangup": plan_of(shared(Hangup, HANGUP_TRANSITIONS, Hangup.NONE)),
        }
        self._out: list[PolicyEffect] = []
        self.reprompted = 0
        self.reason = ""
        self._goodbye_response: str | None = None
        self._current: str | None = None  # the latest response, whose audio is counted
        self._audio_item: str | None = None  # the item of its audio
        self._acknowledged = 0.0  # ms of that item the player acknowledged
        self._audio_ms = 0.0  # of the latest response
        self._audio_from: float | None = None  # when its first chunk came
        self._last_done: str | None = None
        self.spent = 0.0  # the call's cost so far (priced turns)
        self._window = (0.0, 0)  # cost and priced turns since the count (re)started

    # ------------------------------------------------------------------ inputs

    def observe(self, event: object) -> list[PolicyEffect]:
        """Step by one event the core emitted; the effects to carry out."""
        if isinstance(event, ev.StateChanged):
            if event.new is State.SESSION_READY:
                if self.policy.max_duration is not None:
                    self._fire("call_clock", "start")
                if self.policy.budget is not None:
                    self._fire("budget", "start")
                self._fire("idle", "floor_free")
            elif event.new is State.CLOSED:
                self._fire("idle", "stop")
            else:
                self._fire("idle", "floor_taken")
        elif isinstance(event, ev.TurnMetrics) and event.cost is not None:
            self.spent += event.cost
            self._window = (self._window[0] + event.cost, self._window[1] + 1)
            self._fire("budget", "spent")
        elif isinstance(event, ev.Reconnected):
            self._fire("budget", "rolled_over")
        elif isinstance(event, ev.SpeechStarted):
            self.reprompted = 0
        elif isinstance(event, ev.ToolCall) and event.name == "end_call" and self.policy.end_call:
            # The response that called end_call is the goodbye if it spoke (it may already be
            # done); if it only called the tool, the goodbye is the follow-up after its output.
            spoke = event.response_id == self._current and self._audio_ms > 0
            self.reason = self.reason or "end_call"
            self._goodbye_response = event.response_id if spoke else None
            self._fire("hangup", "goodbye_asked")
            if spoke and event.response_id == self._last_done:
                self._fire("hangup", "goodbye_done")
        elif isinstance(event, ev.ResponseStarted):
            self._current, self._audio_ms, self._audio_from = event.response_id, 0.0, None
            if self.hangup.state == Hangup.GOODBYE and self._goodbye_response is None:
                self._goodbye_response = event.response_id
        elif isinstance(event, ev.AudioOut) and event.response_id == self._current:
            if self._audio_from is None or event.item_id != self._audio_item:
                self._audio_from, self._audio_ms, self._audio_item = self._clock(), 0.0, event.item_id
                self._acknowledged = 0.0
            self._audio_ms += event.duration_ms
        elif isinstance(event, ev.ResponseDone):
            self._last_done = event.response_id
            if self.hangup.state == Hangup.GOODBYE and event.response_id == self._goodbye_response:
                self._fire("hangup", "goodbye_done")
        return self._take()

    def played(self, item_id: str, ms: float) -> list[PolicyEffect]:
        """The player acknowledged ``ms`` of an item's audio (``audio_played``, cumulative)."""
        if item_id == self._audio_item:
            self._acknowledged = max(self._acknowledged, ms)
            if self.hangup.state == Hangup.DRAINING and self._acknowledged >= self._audio_ms:
                self._fire("hangup", "played")
        return self._take()

    def timer_fired(self, name: str) -> list[PolicyEffect]:
        """A policy timer expired."""
        trigger = {
            IDLE_TIMER: ("idle", "silence"),
            WARN_TIMER: ("call_clock", "warn"),
            LIMIT_TIMER: ("call_clock", "limit"),
            DRAIN_TIMER: ("hangup", "played"),
        }.get(name)
        if trigger is not None:
            self._fire(*trigger)
        return self._take()

    # ------------------------------------------------------------------ stepping

    def _fire(self, machine: str, trigger: str) -> None:
        fire(self._plans[machine], getattr(self, machine), trigger)

    def _take(self) -> list[PolicyEffect]:
        out, self._out = self._out, []
        return out

    # Guards.

    def _idle_on(self) -> bool:
        return self.policy.idle_after is not None

    def _reprompts_left(self) -> bool:
        return self.reprompted < self.policy.reprompts

    def _warning_due(self) -> bool:
        return self.policy.warn_before > 0

    def _over_budget(self) -> bool:
        assert self.policy.budget is not None
        cost, turns = self._window
        return turns > 0 and cost + cost / turns > self.policy.budget

    def _rollover_on(self) -> bool:
        return self.policy.budget_action == "rollover"

    def _budget_warning_reached(self) -> bool:
        assert self.policy.budget is not None
        at = self.policy.budget_warning_at
        return at > 0 and self._window[0] >= at * self.policy.budget

    # Actions.

    def _arm_idle(self) -> None:
        assert self.policy.idle_after is not None
        self._out.append(ArmTimer(name=IDLE_TIMER, delay=self.policy.idle_after))

    def _disarm_idle(self) -> None:
        self._out.append(CancelTimer(name=IDLE_TIMER))

    def _reprompt(self) -> None:
        self.reprompted += 1
        self._out.append(Say(self.policy.reprompt_instructions))

    def _idle_goodbye(self) -> None:
        self.reason = self.reason or "idle"
        self._fire("hangup", "goodbye_asked")
        self._out.append(Say(self.policy.goodbye_instructions))

    def _arm_clock(self) -> None:
        assert self.policy.max_duration is not None
        warn_at = max(0.0, self.policy.max_duration - self.policy.warn_before)
        if self.policy.warn_before > 0:
            self._out.append(ArmTimer(name=WARN_TIMER, delay=warn_at))
        self._out.append(ArmTimer(name=LIMIT_TIMER, delay=self.policy.max_duration))

    def _speak_warning(self) -> None:
        if self.hangup.state == Hangup.NONE:
            self._out.append(Say(self.policy.warning_instructions))

    def _speak_budget_warning(self) -> None:
        if self.hangup.state == Hangup.NONE:
            self._out.append(Say(self.policy.budget_warning_instructions))

    def _budget_goodbye(self) -> None:
        if self.hangup.state == Hangup.NONE:
            self.reason = "budget"
            self._fire("hangup", "goodbye_asked")
            self._out.append(Say(self.policy.budget_goodbye_instructions))

    def _budget_rollover(self) -> None:
        if self.hangup.state == Hangup.NONE:
            self._out += [Say(self.policy.budget_rollover_instructions), RollOver()]

    def _restart_budget(self) -> None:
        self._window = (0.0, 0)

    def _end_now(self) -> None:
        self.reason = self.reason or "max_duration"
        self._fire("hangup", "cut")

    def _arm_drain(self) -> None:
        if self._audio_item is not None and self._acknowledged >= self._audio_ms:
            self._fire("hangup", "played")  # the player was done before the response was
            return
        started = self._audio_from if self._audio_from is not None else self._clock()
        remaining = max(0.0, started + self._audio_ms / 1000 - self._clock())
        self._out.append(ArmTimer(name=DRAIN_TIMER, delay=remaining + self.policy.drain_margin))

    def _end_session(self) -> None:
        for name in (IDLE_TIMER, WARN_TIMER, LIMIT_TIMER, DRAIN_TIMER):
            self._out.append(CancelTimer(name=name))
        self._out.append(HangupCall(self.reason or "policy"))
