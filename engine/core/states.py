"""Every transition of the conversation, in one declarative place.

Theory of operation
-------------------
A realtime conversation has two coupled lifecycles, so it is two small
machines rather than one large one:

* the **conversation** machine (:class:`State`) says whose turn it is: the
  socket is ``connecting``; the session is ready and idle (``session_ready``);
  the user is talking (``user_speaking``); a response is in flight
  (``responding``); the model's tool calls are being run and answered
  (``awaiting_tool``); the socket dropped (``reconnecting``); or it is over
  (``closed``).
* the **response** machine (:class:`Phase`) tracks the one response slot the
  server allows per conversation: ``idle``; ``requested`` (``response.create``
  sent, no ``response.created`` yet); ``generating``; ``cancelling``. It is the
  inside of ``responding``, and it outlives it: after a barge-in the
  conversation is already ``user_speaking`` while the cancelled response is
  still ``cancelling`` until its ``response.done``.

Every waiting state has a deadline and a declared way out, so a silent or
misbehaving server never holds the conversation:

* ``requested``: ``response_created_timeout`` (``created_timeout``) frees the
  slot with an ``Error(code="response_timeout")``; a follow-up the server owed
  after tool outputs is then asked for by the client, any other owed request
  is sent.
* ``generating``: ``stall_timeout`` without any event of the response
  (``stalled``) reports ``Error(code="response_stalled")`` and cancels it.
* ``cancelling``: ``cancel_timeout`` after the cancel without ``response.done``
  (``cancel_timeout``) frees the slot as if done with
  ``Error(code="cancel_timeout")``, then owed work proceeds; a cancel still
  waiting for the response id ends with ``response_created_timeout``.
* ``connecting`` and ``reconnecting`` (runtime): ``ready_timeout`` per attempt,
  then the reconnect policy's backoff and attempt limit, past which the session
  closes with a reason.
* ``awaiting_tool`` (runtime): each tool's timeout answers the call with an
  error output, so every call gets its output and the state is left.
* ``user_speaking`` is not a wait on the server: the slot stays usable
  (commands still get responses) and the next VAD event leaves it.
* ``responding`` follows the response phase, so its deadlines are the ones above.

The tables below are the only definition of both. The runtime builds plain
``transitions.Machine`` objects from them (one per table, shared by every
conversation) and steps each conversation by the machine's :func:`plan_of`,
and :func:`diagram` draws the same tables with ``transitions``' Mermaid engine
(:mod:`engine.core.diagram`), so the picture in ``diagrams/`` cannot drift
from the code (a test compares them). Guards (``conditions``) are names of
predicates on :class:`~engine.core.conversation.Conversation`.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
from transitions import Machine, MachineError


class State(enum.StrEnum):
    """Whose turn it is. The values are the public state names."""

    CONNECTING = "connecting"
    SESSION_READY = "session_ready"
    USER_SPEAKING = "user_speaking"
    RESPONDING = "responding"
    AWAITING_TOOL = "awaiting_tool"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class Phase(enum.StrEnum):
    """Where the single response slot stands."""

    IDLE = "idle"
    REQUESTED = "requested"
    GENERATING = "generating"
    CANCELLING = "cancelling"


C = State
_LIVE = [C.SESSION_READY, C.USER_SPEAKING, C.RESPONDING, C.AWAITING_TOOL]

CONVERSATION_TRANSITIONS: list[dict[str, Any]] = [
    # session.updated (first on this socket): the session is usable.
    {"trigger": "ready", "source": [C.CONNECTING, C.RECONNECTING], "dest": C.SESSION_READY},
    # input_audio_buffer.speech_started: the user has the floor, whatever was going on.
    {"trigger": "user_started", "source": _LIVE, "dest": C.USER_SPEAKING},
    # input_audio_buffer.speech_stopped: with create_response the server answers by itself.
    {
        "trigger": "user_stopped",
        "source": C.USER_SPEAKING,
        "dest": C.RESPONDING,
        "conditions": "server_will_respond",
    },
    {"trigger": "user_stopped", "source": C.USER_SPEAKING, "dest": C.SESSION_READY},
    # response.create sent, or response.created from the server.
    {"trigger": "respond", "source": _LIVE, "dest": C.RESPONDING},
    # response.done: run the tools it asked for, or hand the floor back.
    {
        "trigger": "response_finished",
        "source": C.RESPONDING,
        "dest": C.AWAITING_TOOL,
        "conditions": "has_open_calls",
    },
    {"trigger": "response_finished", "source": C.RESPONDING, "dest": C.SESSION_READY},
    {"trigger": "response_finished", "source": [C.USER_SPEAKING, C.AWAITING_TOOL], "dest": None},
    # Every call of the finished responses has its output: continue without the tools.
    {"trigger": "tools_answered", "source": C.AWAITING_TOOL, "dest": C.RESPONDING},
    {"trigger": "tools_answered", "source": [C.USER_SPEAKING, C.RESPONDING], "dest": None},
    # The socket dropped (abnormal close, network error, keep-alive timeout).
    {"trigger": "connection_lost", "source": [C.CONNECTING, *_LIVE], "dest": C.RECONNECTING},
    {"trigger": "close", "source": [C.CONNECTING, C.RECONNECTING, *_LIVE], "dest": C.CLOSED},
]

P = Phase
RESPONSE_TRANSITIONS: list[dict[str, Any]] = [
    # response.create sent; at most one in flight, later requests wait (coalesced).
    {"trigger": "request", "source": P.IDLE, "dest": P.REQUESTED},
    # response.created: ours, or one the server started by itself.
    {"trigger": "created", "source": [P.IDLE, P.REQUESTED], "dest": P.GENERATING},
    # A cancel asked for before the id was known goes out now (see Conversation).
    {"trigger": "created", "source": P.CANCELLING, "dest": None},
    # Cancel before response.created is deferred; after it, response.cancel is sent.
    {"trigger": "cancel", "source": [P.REQUESTED, P.GENERATING], "dest": P.CANCELLING},
    {"trigger": "cancel", "source": P.CANCELLING, "dest": None},
    # response.done, or an error that means our request will never be answered.
    {"trigger": "done", "source": [P.REQUESTED, P.GENERATING, P.CANCELLING], "dest": P.IDLE},
    # Deadlines (timer_fired; CoreOptions): a silent server never holds the slot.
    # No response.created in time (also for a cancel still waiting for the id): give up.
    {"trigger": "created_timeout", "source": [P.REQUESTED, P.CANCELLING], "dest": P.IDLE},
    # Nothing from the response for stall_timeout: cancel it and report it.
    {"trigger": "stalled", "source": P.GENERATING, "dest": P.CANCELLING},
    # No response.done after the cancel: free the slot as if it had come.
    {"trigger": "cancel_timeout", "source": P.CANCELLING, "dest": P.IDLE},
    {"trigger": "reset", "source": [P.REQUESTED, P.GENERATING, P.CANCELLING, P.IDLE], "dest": P.IDLE},
]


@attrs.frozen(kw_only=True)
class MachineSpec:
    """One machine of the core: its name, its states, its table and where it starts."""

    name: str
    states: type[enum.StrEnum]
    table: list[dict[str, Any]]
    initial: enum.StrEnum


# Every machine, drawn as concurrent regions of one diagram (engine.core.diagram).
MACHINES: list[MachineSpec] = [
    MachineSpec(name="conversation", states=State, table=CONVERSATION_TRANSITIONS, initial=State.CONNECTING),
    MachineSpec(name="response", states=Phase, table=RESPONSE_TRANSITIONS, initial=Phase.IDLE),
]

# ------------------------------------------------------------------ session lifecycle (I13b)
# The session lifecycle machine (engine.actors) is appended to MACHINES here.

# ------------------------------------------------------------------ building and stepping


def build(
    model: Any, states: type[enum.StrEnum], table: list[dict[str, Any]], initial: enum.StrEnum
) -> Machine:
    """A plain synchronous machine over ``model`` (which gets ``model.state``)."""
    return Machine(
        model=model,
        states=[s.value for s in states],
        transitions=[values(t) for t in table],
        initial=initial.value,
        auto_transitions=False,
        send_event=False,
    )


_shared: dict[int, Machine] = {}


def shared(states: type[enum.StrEnum], table: list[dict[str, Any]], initial: enum.StrEnum) -> Machine:
    """One machine per table, shared by every conversation (its models are not registered).

    A ``transitions`` machine costs tens of kilobytes; a session only needs its
    own ``state`` attribute, so all sessions step their own small model objects
    through the same machine (by its :func:`plan_of`).
    """
    machine = _shared.get(id(table))
    if machine is None:
        machine = _shared[id(table)] = build(None, states, table, initial)
    return machine


Step = tuple[tuple[tuple[str, bool], ...], str | None]
"""One transition of a trigger from a source: its guards (name, expected result) and destination."""
Plan = dict[str, dict[str, tuple[Step, ...]]]
"""A machine's transitions by trigger, then source state, in the machine's order."""

_plans: dict[int, Plan] = {}


def plan_of(machine: Machine) -> Plan:
    """The machine's own transitions, read into nested dicts for :func:`fire`.

    ``transitions`` resolves a trigger through several layers of objects (some
    microseconds), and the core fires one every few server events. The plan is
    read from the built machine, not from the tables, so the machine stays the
    one definition; a test checks that both agree on every state, trigger and
    guard outcome. Only what the tables use is supported: named guards, no
    callbacks.
    """
    plan = _plans.get(id(machine))
    if plan is None:
        plan = {}
        for trigger, event in machine.events.items():
            plan[trigger] = {
                source: tuple(
                    (tuple((str(c.func), c.target) for c in t.conditions), t.dest) for t in transitions
                )
                for source, transitions in event.transitions.items()
            }
        _plans[id(machine)] = plan
    return plan


def fire(plan: Plan, model: Any, trigger: str) -> bool:
    """Trigger like ``machine.events[trigger].trigger(model)``: False when no guard passes.

    Raises ``transitions.MachineError`` when ``trigger`` is not allowed in the model's state.
    """
    steps = plan[trigger].get(model.state)
    if steps is None:
        raise MachineError(f"{trigger!r} is not allowed in state {model.state!r}")
    for guards, dest in steps:
        for name, expected in guards:
            if getattr(model, name)() != expected:
                break
        else:
            if dest is not None:
                model.state = dest
            return True
    return False


def values(transition: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Enum members to plain names (``transitions`` keys states by name)."""

    def name(s: Any) -> Any:
        if s is None:
            return None
        return f"{prefix}{s.value}" if isinstance(s, enum.Enum) else s

    out = dict(transition)
    source = transition["source"]
    out["source"] = [name(s) for s in source] if isinstance(source, list) else name(source)
    out["dest"] = name(transition["dest"])
    return out
