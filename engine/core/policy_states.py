"""The call policies' machines: idle, call_clock, budget and hangup (stepped by :mod:`engine.core.policy`).

Declared here and registered in :data:`engine.core.states.MACHINES`, so the
diagram draws them with the core's own.
"""

from __future__ import annotations

import enum
from typing import Any

from engine.core.machine import MachineSpec

# Stepped by engine.core.policy.CallPolicies (from the core's events and its own timers); its
# effects (Say, HangupCall, timers) are carried out by the runtime. Off unless a CallPolicy enables them.


class Idle(enum.StrEnum):
    """The idle policy: is the user's silence being timed?"""

    PAUSED = "paused"
    LISTENING = "listening"
    DONE = "done"


class CallClock(enum.StrEnum):
    """The maximum call length: counting from the first ready session, warned, or over."""

    OFF = "off"
    RUNNING = "running"
    WARNED = "warned"
    DONE = "done"


class Budget(enum.StrEnum):
    """The cost budget: counting turns' costs from the first ready session, warned, rolling over, spent."""

    OFF = "off"
    RUNNING = "running"
    WARNED = "warned"
    ROLLING = "rolling"
    DONE = "done"


class Hangup(enum.StrEnum):
    """Ending the call by policy: the goodbye is asked for, then played, then the session ends."""

    NONE = "none"
    GOODBYE = "goodbye"
    DRAINING = "draining"
    ENDED = "ended"


I = Idle  # noqa: E741
IDLE_TRANSITIONS: list[dict[str, Any]] = [
    # The conversation is session_ready: nobody has the floor, the silence is timed.
    {"trigger": "floor_free", "source": I.PAUSED, "dest": I.LISTENING, "conditions": "idle_on"},
    {"trigger": "floor_free", "source": [I.PAUSED, I.LISTENING, I.DONE], "dest": None},
    # The user speaks, a response runs, tools run, the socket dropped.
    {"trigger": "floor_taken", "source": I.LISTENING, "dest": I.PAUSED},
    {"trigger": "floor_taken", "source": [I.PAUSED, I.DONE], "dest": None},
    # idle_after of silence: reprompt while reprompts are left, then the goodbye.
    {
        "trigger": "silence",
        "source": I.LISTENING,
        "dest": I.PAUSED,
        "conditions": "reprompts_left",
        "after": "reprompt",
    },
    {"trigger": "silence", "source": I.LISTENING, "dest": I.DONE, "after": "idle_goodbye"},
    {"trigger": "silence", "source": [I.PAUSED, I.DONE], "dest": None},  # a stale timer
    {"trigger": "stop", "source": [I.PAUSED, I.LISTENING, I.DONE], "dest": I.DONE},
]
IDLE_ACTIONS: dict[enum.StrEnum, dict[str, list[str]]] = {
    I.LISTENING: {"on_enter": ["arm_idle"], "on_exit": ["disarm_idle"]},
}

K = CallClock
CALL_CLOCK_TRANSITIONS: list[dict[str, Any]] = [
    # The first ready session starts the clock (a reconnect does not restart it).
    {"trigger": "start", "source": K.OFF, "dest": K.RUNNING},
    {"trigger": "start", "source": [K.RUNNING, K.WARNED, K.DONE], "dest": None},
    # max_duration - warn_before: the warning is spoken (unless a goodbye is already under way).
    {"trigger": "warn", "source": K.RUNNING, "dest": K.WARNED, "after": "speak_warning"},
    {"trigger": "warn", "source": [K.OFF, K.WARNED, K.DONE], "dest": None},
    # max_duration: the call ends now.
    {"trigger": "limit", "source": [K.RUNNING, K.WARNED], "dest": K.DONE, "after": "end_now"},
    {"trigger": "limit", "source": [K.OFF, K.DONE], "dest": None},
]
CALL_CLOCK_ACTIONS: dict[enum.StrEnum, dict[str, list[str]]] = {
    K.RUNNING: {"on_enter": ["arm_clock"]},
}

B = Budget
BUDGET_TRANSITIONS: list[dict[str, Any]] = [
    # The first ready session starts the count (a reconnect does not restart it).
    {"trigger": "start", "source": B.OFF, "dest": B.RUNNING},
    {"trigger": "start", "source": [B.RUNNING, B.WARNED, B.ROLLING, B.DONE], "dest": None},
    # A priced turn is over. If the next (at the average cost so far) would exceed the budget:
    # roll over to a fresh server session after a notice, or ask for the goodbye; else, past
    # the warning fraction, the warning is spoken once.
    {
        "trigger": "spent",
        "source": [B.RUNNING, B.WARNED],
        "dest": B.ROLLING,
        "conditions": ["over_budget", "rollover_on"],
        "after": "budget_rollover",
    },
    {
        "trigger": "spent",
        "source": [B.RUNNING, B.WARNED],
        "dest": B.DONE,
        "conditions": "over_budget",
        "after": "budget_goodbye",
    },
    {
        "trigger": "spent",
        "source": B.RUNNING,
        "dest": B.WARNED,
        "conditions": "budget_warning_reached",
        "after": "speak_budget_warning",
    },
    {"trigger": "spent", "source": [B.OFF, B.RUNNING, B.WARNED, B.ROLLING, B.DONE], "dest": None},
    # The rollover is done (Reconnected): the count starts again on the fresh session.
    {"trigger": "rolled_over", "source": B.ROLLING, "dest": B.RUNNING, "after": "restart_budget"},
    {"trigger": "rolled_over", "source": [B.OFF, B.RUNNING, B.WARNED, B.DONE], "dest": None},
]

H = Hangup
HANGUP_TRANSITIONS: list[dict[str, Any]] = [
    # A goodbye is asked for (idle), or the model called end_call (its response is the goodbye).
    {"trigger": "goodbye_asked", "source": H.NONE, "dest": H.GOODBYE},
    {"trigger": "goodbye_asked", "source": [H.GOODBYE, H.DRAINING, H.ENDED], "dest": None},
    # The goodbye response is done: wait until its audio has been played.
    {"trigger": "goodbye_done", "source": H.GOODBYE, "dest": H.DRAINING},
    {"trigger": "goodbye_done", "source": [H.NONE, H.DRAINING, H.ENDED], "dest": None},
    # Played: acknowledged by the player, or the estimate's timer.
    {"trigger": "played", "source": H.DRAINING, "dest": H.ENDED},
    {"trigger": "played", "source": [H.NONE, H.GOODBYE, H.ENDED], "dest": None},
    # max_duration: no goodbye to wait for.
    {"trigger": "cut", "source": [H.NONE, H.GOODBYE, H.DRAINING], "dest": H.ENDED},
    {"trigger": "cut", "source": H.ENDED, "dest": None},
]
HANGUP_ACTIONS: dict[enum.StrEnum, dict[str, list[str]]] = {
    H.DRAINING: {"on_enter": ["arm_drain"]},
    H.ENDED: {"on_enter": ["end_session"]},
}
POLICY_MACHINES: list[MachineSpec] = [
    MachineSpec(name="idle", states=Idle, table=IDLE_TRANSITIONS, initial=Idle.PAUSED, actions=IDLE_ACTIONS),
    MachineSpec(
        name="call_clock",
        states=CallClock,
        table=CALL_CLOCK_TRANSITIONS,
        initial=CallClock.OFF,
        actions=CALL_CLOCK_ACTIONS,
    ),
    MachineSpec(name="budget", states=Budget, table=BUDGET_TRANSITIONS, initial=Budget.OFF),
    MachineSpec(
        name="hangup",
        states=Hangup,
        table=HANGUP_TRANSITIONS,
        initial=Hangup.NONE,
        actions=HANGUP_ACTIONS,
    ),
]
