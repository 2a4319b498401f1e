"""The cost budget on a fake clock, with scripted turn costs: the warning at its fraction, the goodbye
when the next turn (at the average cost so far) would exceed it, the hang-up once the goodbye was
played; or, with ``budget_action="rollover"``, a notice, a rollover, and once the session is back the
count starting again."""

from __future__ import annotations

import pytest

from engine.core import events as ev
from engine.core.effects import ArmTimer
from engine.core.policy import DRAIN_TIMER, CallPolicies, CallPolicy, HangupCall, RollOver, Say
from engine.core.policy_states import Budget, Hangup
from engine.core.states import MACHINES, State
from tests.core.test_policy import Clock, a_response, audio, moved

S = State


def turn(policies: CallPolicies, n: int, cost: float | None) -> list[object]:
    """One turn that costs ``cost``: its response, then its TurnMetrics."""
    out = a_response(policies, f"resp_{n}", ms=100)
    return out + policies.observe(ev.TurnMetrics(turn=n, response_id=f"resp_{n}", cost=cost))


def ready(policy: CallPolicy) -> tuple[CallPolicies, Clock]:
    clock = Clock()
    policies = CallPolicies(policy, clock)
    policies.observe(moved(S.CONNECTING, S.SESSION_READY))
    return policies, clock


def test_the_budget_machine_is_registered_for_the_diagram() -> None:
    assert "budget" in {spec.name for spec in MACHINES}


def test_the_warning_at_its_fraction_then_the_goodbye_then_the_hangup_once_played() -> None:
    policies, clock = ready(CallPolicy(budget=1.0, budget_warning_at=0.5, drain_margin=0))
    assert policies.budget.state == Budget.RUNNING
    assert turn(policies, 1, 0.2) == []  # 0.2 spent, next at ~0.2: 0.4 <= 1.0, under the warning
    assert turn(policies, 2, 0.3) == [Say(policies.policy.budget_warning_instructions)]  # 0.5 reached
    assert policies.budget.state == Budget.WARNED
    # The warning's own turn: 0.6 spent, the next at 0.2 on average: 0.8, still within.
    assert turn(policies, 3, 0.1) == []
    # 0.9 spent in 4 turns: the next (0.225) would exceed 1.0: the goodbye is asked for.
    assert turn(policies, 4, 0.3) == [Say(policies.policy.budget_goodbye_instructions)]
    assert (policies.budget.state, policies.hangup.state) == (Budget.DONE, Hangup.GOODBYE)
    assert policies.spent == pytest.approx(0.9)
    # The goodbye: 1 s of audio from t=5, done at t=5.5; the drain waits for the rest.
    policies.observe(moved(S.SESSION_READY, S.RESPONDING))
    policies.observe(ev.ResponseStarted(response_id="resp_bye"))
    clock.now = 5.0
    policies.observe(audio("resp_bye", 1000))
    clock.now = 5.5
    out = policies.observe(ev.ResponseDone(response_id="resp_bye", status="completed"))
    assert out == [ArmTimer(name=DRAIN_TIMER, delay=pytest.approx(0.5))]
    assert policies.observe(ev.TurnMetrics(turn=5, response_id="resp_bye", cost=0.5)) == []  # spent: moot
    assert policies.timer_fired(DRAIN_TIMER)[-1] == HangupCall("budget")


def test_a_first_turn_that_leaves_no_room_for_a_second_ends_at_once() -> None:
    policies, _ = ready(CallPolicy(budget=0.01))
    assert turn(policies, 1, 0.006) == [Say(policies.policy.budget_goodbye_instructions)]  # 0.012 > 0.01
    assert policies.reason == "budget"


def test_rollover_speaks_the_notice_rolls_over_and_counts_anew() -> None:
    policies, _ = ready(CallPolicy(budget=1.0, budget_action="rollover", budget_warning_at=0))
    assert turn(policies, 1, 0.4) == []
    assert turn(policies, 2, 0.4) == [Say(policies.policy.budget_rollover_instructions), RollOver()]
    assert (policies.budget.state, policies.hangup.state) == (Budget.ROLLING, Hangup.NONE)
    assert turn(policies, 3, 0.4) == []  # the notice's own turn, before the rollover: no second notice
    assert policies.observe(ev.Reconnected(attempt=1)) == []
    assert policies.budget.state == Budget.RUNNING
    assert turn(policies, 4, 0.4) == []  # the count started again: 0.4 + 0.4 is within
    assert turn(policies, 5, 0.4)[-1] == RollOver()
    assert policies.spent == pytest.approx(2.0)  # the call's total is kept


def test_unpriced_turns_and_other_goodbyes_leave_it_alone() -> None:
    policies, _ = ready(CallPolicy(budget=0.01, end_call=True))
    assert turn(policies, 1, None) == []  # no price table: nothing is counted
    policies.observe(ev.ToolCall(call_id="c1", name="end_call", arguments="{}", response_id="resp_x"))
    assert policies.hangup.state == Hangup.GOODBYE
    out = turn(policies, 2, 1.0)  # the follow-up is end_call's goodbye: it drains
    assert not [e for e in out if isinstance(e, Say)]  # and no second goodbye is asked for
    assert policies.reason == "end_call"


def test_off_by_default_and_a_reconnect_does_not_restart_it() -> None:
    policies, _ = ready(CallPolicy())
    assert policies.budget.state == Budget.OFF
    assert turn(policies, 1, 100.0) == []
    policies, _ = ready(CallPolicy(budget=1.0, budget_warning_at=0.5))
    assert turn(policies, 1, 0.45) == []
    policies.observe(moved(S.RECONNECTING, S.SESSION_READY))
    assert turn(policies, 2, 0.1) == [Say(policies.policy.budget_warning_instructions)]  # 0.55 counted


@pytest.mark.parametrize(
    ("field", "value"),
    [("budget", 0), ("budget", -1.0), ("budget_warning_at", 1.5), ("budget_action", "pause")],
)
def test_bad_budget_values_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        CallPolicy(**{field: value})  # type: ignore[arg-type]
