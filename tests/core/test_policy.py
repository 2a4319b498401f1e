"""The call policies on a fake clock: idle reprompts then goodbye, end_call after the goodbye is played,
the maximum call length with its warning. Timers are effects; the test fires them."""

from __future__ import annotations

import pytest

from engine.core import events as ev
from engine.core.effects import ArmTimer, CancelTimer
from engine.core.policy import (
    DRAIN_TIMER,
    IDLE_TIMER,
    LIMIT_TIMER,
    WARN_TIMER,
    CallPolicies,
    CallPolicy,
    HangupCall,
    Say,
)
from engine.core.policy_states import CallClock, Hangup, Idle
from engine.core.states import MACHINES, State

S = State


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def moved(old: State, new: State) -> ev.StateChanged:
    return ev.StateChanged(old=old, new=new)


def audio(response_id: str, ms: int) -> ev.AudioOut:
    return ev.AudioOut(pcm=b"\0\0" * 24 * ms, sample_rate=24000, item_id="item", response_id=response_id)


def a_response(policies: CallPolicies, response_id: str, ms: int = 0) -> list[object]:
    """A response that speaks ``ms`` of audio, from the floor being taken to the floor being free."""
    out: list[object] = []
    out += policies.observe(moved(S.SESSION_READY, S.RESPONDING))
    out += policies.observe(ev.ResponseStarted(response_id=response_id))
    if ms:
        out += policies.observe(audio(response_id, ms))
    out += policies.observe(ev.ResponseDone(response_id=response_id, status="completed"))
    out += policies.observe(moved(S.RESPONDING, S.SESSION_READY))
    return out


def test_the_machines_are_registered_for_the_diagram() -> None:
    assert {"idle", "call_clock", "hangup"} <= {spec.name for spec in MACHINES}


def test_idle_reprompts_then_says_goodbye_and_ends_once_it_was_played() -> None:
    clock = Clock()
    policies = CallPolicies(CallPolicy(idle_after=8, reprompts=2), clock)
    assert policies.observe(moved(S.CONNECTING, S.SESSION_READY)) == [ArmTimer(name=IDLE_TIMER, delay=8)]
    for count in (1, 2):
        out = policies.timer_fired(IDLE_TIMER)
        assert out == [CancelTimer(name=IDLE_TIMER), Say(policies.policy.reprompt_instructions)]
        assert policies.reprompted == count
        # The reprompt is spoken; the floor is free again and the silence is timed anew.
        assert a_response(policies, f"resp_{count}")[-1] == ArmTimer(name=IDLE_TIMER, delay=8)
    out = policies.timer_fired(IDLE_TIMER)
    assert out[-1] == Say(policies.policy.goodbye_instructions)
    assert (policies.idle.state, policies.hangup.state) == (Idle.DONE, Hangup.GOODBYE)
    # The goodbye: 1.5 s of audio from t=10; done at t=10.2, so 1.3 s are still to play.
    policies.observe(moved(S.SESSION_READY, S.RESPONDING))
    policies.observe(ev.ResponseStarted(response_id="resp_bye"))
    clock.now = 10.0
    policies.observe(audio("resp_bye", 1500))
    clock.now = 10.2
    out = policies.observe(ev.ResponseDone(response_id="resp_bye", status="completed"))
    assert out == [ArmTimer(name=DRAIN_TIMER, delay=pytest.approx(1.3 + 0.25))]
    assert policies.observe(moved(S.RESPONDING, S.SESSION_READY)) == []  # no idle timer any more
    out = policies.timer_fired(DRAIN_TIMER)
    assert out[-1] == HangupCall("idle") and policies.hangup.state == Hangup.ENDED
    assert policies.timer_fired(DRAIN_TIMER) == []  # once


def test_the_user_speaking_resets_the_reprompts_and_pauses_the_timer() -> None:
    policies = CallPolicies(CallPolicy(idle_after=5, reprompts=1), Clock())
    policies.observe(moved(S.CONNECTING, S.SESSION_READY))
    policies.timer_fired(IDLE_TIMER)
    a_response(policies, "resp_1")
    assert policies.reprompted == 1
    assert policies.observe(ev.SpeechStarted()) == []
    assert policies.observe(moved(S.SESSION_READY, S.USER_SPEAKING)) == [CancelTimer(name=IDLE_TIMER)]
    assert policies.reprompted == 0
    assert policies.timer_fired(IDLE_TIMER) == []  # a stale timer while paused does nothing


def test_end_call_ends_after_the_goodbye_is_acknowledged_as_played() -> None:
    clock = Clock()
    policies = CallPolicies(CallPolicy(end_call=True), clock)
    policies.observe(moved(S.CONNECTING, S.SESSION_READY))
    policies.observe(moved(S.SESSION_READY, S.RESPONDING))
    policies.observe(ev.ResponseStarted(response_id="resp_1"))
    policies.observe(audio("resp_1", 800))
    # The tool call may come with or after response.done: either way the goodbye is that response.
    policies.observe(ev.ResponseDone(response_id="resp_1", status="completed"))
    out = policies.observe(ev.ToolCall(call_id="c1", name="end_call", arguments="{}", response_id="resp_1"))
    assert out == [ArmTimer(name=DRAIN_TIMER, delay=pytest.approx(0.8 + 0.25))]
    assert policies.played("item", 400) == []  # half of it: not yet
    assert policies.played("another", 900) == []
    out = policies.played("item", 800)
    assert out[-1] == HangupCall("end_call")


def test_end_call_is_ignored_unless_opted_in() -> None:
    policies = CallPolicies(CallPolicy(), Clock())
    policies.observe(ev.ToolCall(call_id="c1", name="end_call", arguments="{}", response_id="r"))
    assert policies.hangup.state == Hangup.NONE


def test_max_duration_warns_then_ends() -> None:
    policies = CallPolicies(CallPolicy(max_duration=600, warn_before=30), Clock())
    out = policies.observe(moved(S.CONNECTING, S.SESSION_READY))
    assert out == [ArmTimer(name=WARN_TIMER, delay=570), ArmTimer(name=LIMIT_TIMER, delay=600)]
    # A reconnect does not restart the clock.
    assert policies.observe(moved(S.RECONNECTING, S.SESSION_READY)) == []
    assert policies.timer_fired(WARN_TIMER) == [Say(policies.policy.warning_instructions)]
    assert policies.call_clock.state == CallClock.WARNED
    out = policies.timer_fired(LIMIT_TIMER)
    assert out[-1] == HangupCall("max_duration") and policies.hangup.state == Hangup.ENDED


def test_everything_is_off_by_default() -> None:
    policies = CallPolicies(CallPolicy(), Clock())
    assert a_response(policies, "resp_1", ms=100) == []
    assert policies.observe(moved(S.CONNECTING, S.SESSION_READY)) == []


@pytest.mark.parametrize(
    ("field", "value"), [("idle_after", 0), ("max_duration", -1), ("reprompts", -1), ("warn_before", -1)]
)
def test_bad_values_are_refused(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        CallPolicy(**{field: value})


def test_a_goodbye_played_before_its_response_is_done_ends_at_once() -> None:
    policies = CallPolicies(CallPolicy(end_call=True), Clock())
    policies.observe(ev.ResponseStarted(response_id="resp_1"))
    policies.observe(audio("resp_1", 300))
    policies.observe(ev.ToolCall(call_id="c1", name="end_call", arguments="{}", response_id="resp_1"))
    assert policies.played("item", 300) == []  # not done yet: it may say more
    out = policies.observe(ev.ResponseDone(response_id="resp_1", status="completed"))
    assert out[-1] == HangupCall("end_call")


def test_an_end_call_without_words_makes_the_follow_up_the_goodbye() -> None:
    policies = CallPolicies(CallPolicy(end_call=True, drain_margin=0), Clock())
    policies.observe(ev.ResponseStarted(response_id="resp_1"))
    policies.observe(ev.ToolCall(call_id="c1", name="end_call", arguments="{}", response_id="resp_1"))
    assert policies.observe(ev.ResponseDone(response_id="resp_1", status="completed")) == []
    policies.observe(ev.ResponseStarted(response_id="resp_2"))  # the follow-up after the output
    policies.observe(audio("resp_2", 500))
    out = policies.observe(ev.ResponseDone(response_id="resp_2", status="completed"))
    assert out == [ArmTimer(name=DRAIN_TIMER, delay=pytest.approx(0.5))]
    assert policies.timer_fired(DRAIN_TIMER)[-1] == HangupCall("end_call")
