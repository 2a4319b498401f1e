"""Every transition of the conversation core, in one declarative place.

Theory of operation
-------------------
The core is small machines that run at the same time (concurrent
regions of one diagram), not one large one:

* **conversation** (:class:`State`) says whose turn it is: the socket is
  ``connecting``; the session is ready and idle (``session_ready``); the user
  is talking (``user_speaking``); a response is in flight (``responding``);
  the model's tool calls are being run and answered (``awaiting_tool``); the
  socket dropped (``reconnecting``); or it is over (``closed``). The ``vad_on``
  guard: without turn detection, VAD events are reported and move nothing
  (the application owns turns).
* **response** (:class:`Phase`) tracks the one response slot the server
  allows: ``idle``; ``requested`` (our ``response.create`` is out, no
  ``response.created`` yet); ``server_owed`` (the server will start a response
  by itself: a server-VAD turn, or the follow-up after tool outputs when the
  server continues); ``generating``; ``cancel_deferred`` (a cancel asked for
  before ``response.created`` named the response); ``cancelling``
  (``response.cancel`` sent, waiting for ``response.done``). It outlives
  ``responding``: after a barge-in the conversation is already
  ``user_speaking`` while the cancelled response is still ``cancelling``.
* **owed** (:class:`Owed`) says which response is owed once the slot frees,
  and why: ``none``; ``owed`` (a request coalesced while the slot was busy or
  the session not ready); ``tool_followup`` (tool outputs were sent that no
  response has seen); ``server_followup`` (the server was left to continue
  after the tools; if it does not, the client asks); ``resume`` (the socket
  dropped mid-turn: the restore asks the model to go on) and ``lost_turn`` (as
  ``resume``, and the user's last words were lost: the model asks the user to
  repeat).
* **voice** (:class:`Voice`): ``free`` until the first assistant audio on a
  server that then refuses a voice change (``voice_lock_applies``): ``locked``.
* **user_turn** (:class:`UserTurn`): ``open`` from the user's speech (server
  VAD) until its transcript is final or a response starts; speech still open
  when the socket drops is a lost turn.

* **update** (:class:`UpdateAck`): ``pending`` from a ``session.update``
  until the server answers every one sent (``session.updated`` applies the
  oldest, an ``error`` naming its event id refuses it), with the deadline
  ``response_created_timeout`` (``update_timeout``) as the way out.

One more machine belongs to the runtime and runs beside them: the session
**lifecycle** (:class:`Lifecycle`): ``new``; ``connecting`` (the first socket,
retried under the reconnect policy); ``open``; ``rollover_due``
(``max_session_duration`` elapsed: still open, waiting for the
``between_turns`` guard); ``rolling_over`` (the socket is closed on purpose);
``reconnecting``; ``closing``; ``closed``. The supervisor
(:mod:`engine.actors.supervisor`) steps it through
:class:`engine.core.lifecycle.LifecycleMachine` and does its actions.

Every waiting phase has a deadline, armed on entering it and disarmed on
leaving it (entry and exit actions in :data:`RESPONSE_ACTIONS`), and a
declared way out, so a silent or misbehaving server never holds the
conversation:

* ``requested``, ``server_owed``, ``cancel_deferred``: no ``response.created``
  within ``response_created_timeout`` (``created_timeout``) frees the slot with
  ``Error(code="response_timeout")``; a ``server_followup`` becomes ``owed``
  and the client asks itself. (``cancel_deferred`` keeps the deadline of the
  request it cancels.)
* ``generating``: ``stall_timeout`` without any event of the response
  (``stalled``) reports ``Error(code="response_stalled")`` and cancels it.
* ``cancelling``: ``cancel_timeout`` without ``response.done``
  (``cancel_timeout``) frees the slot as if done with ``Error(code="cancel_timeout")``.
* ``connecting`` and ``reconnecting`` (runtime): ``ready_timeout`` per attempt,
  then the reconnect policy; ``awaiting_tool`` (runtime): each tool's timeout
  answers its call with an error output.

How the machines move each other is declared once, in :data:`COUPLING`: a
table names an action such as ``conversation_responds``, and the coupling
says which trigger of which machine that is (h11's ``_state.py`` keeps its
machines' coupling beside them in the same way).

The tables are the only definition. The runtime builds plain
``transitions.Machine`` objects from them (one per table, shared by every
conversation) and steps each conversation by the machine's :func:`plan_of`;
:mod:`engine.core.diagram` draws :data:`MACHINES` with ``transitions``'
Mermaid engine, so the picture in ``diagrams/`` cannot drift from the code (a
test compares them). Guards (``conditions``/``unless``) and actions
(``before``/``after`` of a transition, ``on_enter``/``on_exit`` of a state) are
names of methods of the model each machine steps.
"""

from __future__ import annotations

import enum
from typing import Any

from engine.core.machine import Actions as Actions
from engine.core.machine import MachineSpec as MachineSpec
from engine.core.machine import Plan as Plan
from engine.core.machine import Step as Step
from engine.core.machine import build as build
from engine.core.machine import callbacks_of as callbacks_of
from engine.core.machine import fire as fire
from engine.core.machine import plan_of as plan_of
from engine.core.machine import shared as shared
from engine.core.machine import values as values


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
    SERVER_OWED = "server_owed"
    GENERATING = "generating"
    CANCEL_DEFERRED = "cancel_deferred"
    CANCELLING = "cancelling"


class Owed(enum.StrEnum):
    """Which response is owed once the slot frees, and why."""

    NONE = "none"
    OWED = "owed"
    TOOL_FOLLOWUP = "tool_followup"
    SERVER_FOLLOWUP = "server_followup"
    RESUME = "resume"
    LOST_TURN = "lost_turn"


class Voice(enum.StrEnum):
    """Whether the output voice may still change."""

    FREE = "free"
    LOCKED = "locked"


class UserTurn(enum.StrEnum):
    """Whether the user's speech is heard but not yet in the conversation."""

    NONE = "none"
    OPEN = "open"


class UpdateAck(enum.StrEnum):
    """Whether a ``session.update`` awaits the server's answer (``session.updated`` or an error)."""

    NONE = "none"
    PENDING = "pending"


C = State
_LIVE = [C.SESSION_READY, C.USER_SPEAKING, C.RESPONDING, C.AWAITING_TOOL]
_OPEN = [C.CONNECTING, C.RECONNECTING, *_LIVE]

CONVERSATION_TRANSITIONS: list[dict[str, Any]] = [
    # session.updated (first on this socket): the session is usable.
    {"trigger": "ready", "source": [C.CONNECTING, C.RECONNECTING], "dest": C.SESSION_READY},
    # input_audio_buffer.speech_started: the user has the floor, whatever was going on (a barge-in).
    {
        "trigger": "user_started",
        "source": _LIVE,
        "dest": C.USER_SPEAKING,
        "conditions": "vad_on",
        "before": ["user_turn_heard", "barge_in"],
    },
    # Manual turns (turn_detection None): VAD events are reported and change nothing.
    {"trigger": "user_started", "source": _OPEN, "dest": None, "unless": "vad_on"},
    # input_audio_buffer.speech_stopped: with create_response the server answers by itself.
    {
        "trigger": "user_stopped",
        "source": C.USER_SPEAKING,
        "dest": C.RESPONDING,
        "conditions": ["vad_on", "server_will_respond"],
        "after": "await_server_response",
    },
    {"trigger": "user_stopped", "source": C.USER_SPEAKING, "dest": C.SESSION_READY, "conditions": "vad_on"},
    {"trigger": "user_stopped", "source": _OPEN, "dest": None, "unless": "vad_on"},
    # response.create sent, or the server started (or owes) a response.
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
    # The socket dropped (abnormal close, network error, keep-alive timeout).
    {"trigger": "connection_lost", "source": [C.CONNECTING, *_LIVE], "dest": C.RECONNECTING},
    {"trigger": "close", "source": _OPEN, "dest": C.CLOSED},
]

CONVERSATION_ACTIONS: dict[enum.StrEnum, dict[str, list[str]]] = {
    # Every deadline still armed is disarmed.
    C.CLOSED: {"on_enter": ["disarm_all"]},
}

P = Phase
_WAITING = [P.REQUESTED, P.SERVER_OWED, P.CANCEL_DEFERRED]  # no response.created yet
_BUSY = [P.REQUESTED, P.SERVER_OWED, P.GENERATING, P.CANCEL_DEFERRED, P.CANCELLING]
RESPONSE_TRANSITIONS: list[dict[str, Any]] = [
    # response.create sent; at most one in flight, later requests are owed (coalesced).
    {"trigger": "request", "source": P.IDLE, "dest": P.REQUESTED},
    # The server will start a response by itself (server-VAD turn, follow-up after tools).
    {"trigger": "expect", "source": P.IDLE, "dest": P.SERVER_OWED},
    # response.created: ours, one the server owed, or one it started by itself.
    {
        "trigger": "created",
        "source": [P.IDLE, P.REQUESTED, P.SERVER_OWED],
        "dest": P.GENERATING,
        "after": ["owed_seen", "user_turn_settled"],
    },
    # A cancel asked for before the id was known goes out now.
    # (A response created while one is cancelling is cancelled too, with a fresh deadline.)
    {
        "trigger": "created",
        "source": [P.CANCEL_DEFERRED, P.CANCELLING],
        "dest": P.CANCELLING,
        "after": ["send_deferred_cancel", "owed_seen", "user_turn_settled"],
    },
    # Cancel before response.created is deferred; after it, response.cancel is sent.
    {"trigger": "cancel", "source": [P.REQUESTED, P.SERVER_OWED], "dest": P.CANCEL_DEFERRED},
    {"trigger": "cancel", "source": P.GENERATING, "dest": P.CANCELLING},
    {"trigger": "cancel", "source": [P.CANCEL_DEFERRED, P.CANCELLING], "dest": None},
    # The user took the floor before the server started the reply it owed: it will not.
    {"trigger": "withdraw", "source": P.SERVER_OWED, "dest": P.IDLE},
    # response.done, or an error that means our request will never be answered.
    {"trigger": "done", "source": _BUSY, "dest": P.IDLE},
    # Deadlines (timer_fired; CoreOptions): a silent server never holds the slot.
    {"trigger": "created_timeout", "source": _WAITING, "dest": P.IDLE, "after": "owed_not_continued"},
    {"trigger": "stalled", "source": P.GENERATING, "dest": P.CANCELLING},
    {"trigger": "cancel_timeout", "source": P.CANCELLING, "dest": P.IDLE},
    # The socket dropped or the session closed: the slot is gone with it.
    {"trigger": "reset", "source": [*_BUSY, P.IDLE], "dest": P.IDLE},
]

RESPONSE_ACTIONS: dict[enum.StrEnum, dict[str, list[str]]] = {
    # Deadlines: response_created while waiting for response.created, response_stall while
    # generating, response_cancel while cancelling. Leaving requested forgets the create's
    # event id (a late error about it is no longer ours).
    P.REQUESTED: {
        "on_enter": ["start_waiting", "conversation_responds"],
        "on_exit": ["stop_waiting", "forget_create"],
    },
    P.SERVER_OWED: {"on_enter": ["start_waiting", "conversation_responds"], "on_exit": ["stop_waiting"]},
    P.CANCEL_DEFERRED: {"on_enter": ["keep_waiting"], "on_exit": ["stop_waiting"]},
    P.GENERATING: {"on_enter": ["watch_stall", "conversation_responds"], "on_exit": ["stop_stall_watch"]},
    P.CANCELLING: {"on_enter": ["arm_cancel_deadline"], "on_exit": ["disarm_cancel_deadline"]},
}

W = Owed
_DEBTS = [W.OWED, W.TOOL_FOLLOWUP, W.SERVER_FOLLOWUP]
_ALL_OWED = [W.NONE, *_DEBTS, W.RESUME, W.LOST_TURN]
OWED_TRANSITIONS: list[dict[str, Any]] = [
    # A response asked for while the slot is busy, tools are open or the session is not ready.
    # The follow-up after tools, and a restore's resume, answer it too.
    {"trigger": "owe", "source": [W.NONE, W.SERVER_FOLLOWUP], "dest": W.OWED},
    {"trigger": "owe", "source": [W.OWED, W.TOOL_FOLLOWUP, W.RESUME, W.LOST_TURN], "dest": None},
    # A tool output was sent: a response must see it.
    {"trigger": "output_sent", "source": [W.NONE, W.OWED, W.SERVER_FOLLOWUP], "dest": W.TOOL_FOLLOWUP},
    {"trigger": "output_sent", "source": [W.TOOL_FOLLOWUP, W.RESUME, W.LOST_TURN], "dest": None},
    # Every call answered and the server continues by itself (Inworld's auto_tool_response).
    {"trigger": "left_to_server", "source": _ALL_OWED, "dest": W.SERVER_FOLLOWUP},
    # response.created (coupled): that response sees every output sent so far.
    {"trigger": "seen", "source": [W.TOOL_FOLLOWUP, W.SERVER_FOLLOWUP], "dest": W.NONE},
    {"trigger": "seen", "source": [W.NONE, W.OWED, W.RESUME, W.LOST_TURN], "dest": None},
    # No response.created in time (coupled): the server did not continue, the client asks.
    {"trigger": "not_continued", "source": W.SERVER_FOLLOWUP, "dest": W.OWED},
    {
        "trigger": "not_continued",
        "source": [W.NONE, W.OWED, W.TOOL_FOLLOWUP, W.RESUME, W.LOST_TURN],
        "dest": None,
    },
    # The user cut in or cancelled: what they had asked for is no longer wanted.
    {"trigger": "drop", "source": [W.OWED, W.SERVER_FOLLOWUP], "dest": W.NONE},
    {"trigger": "drop", "source": [W.NONE, W.TOOL_FOLLOWUP, W.RESUME, W.LOST_TURN], "dest": None},
    # The owed response is asked for now.
    {"trigger": "paid", "source": _ALL_OWED, "dest": W.NONE},
    # The socket dropped: a turn in flight or owed is resumed on the next socket.
    {"trigger": "lost", "source": _DEBTS, "dest": W.RESUME},
    {"trigger": "lost", "source": W.NONE, "dest": W.RESUME, "conditions": "slot_busy"},
    {"trigger": "lost", "source": [W.NONE, W.RESUME, W.LOST_TURN], "dest": None},
    {"trigger": "words_lost", "source": _ALL_OWED, "dest": W.LOST_TURN},
    # The restore replayed the history: a note tells the model how to go on, then it is asked.
    {
        "trigger": "restored",
        "source": [W.RESUME, W.TOOL_FOLLOWUP],
        "dest": W.OWED,
        "conditions": "no_open_calls",
        "before": "add_resume_note",
    },
    {
        "trigger": "restored",
        "source": W.LOST_TURN,
        "dest": W.OWED,
        "conditions": "no_open_calls",
        "before": "add_lost_turn_note",
    },
    {"trigger": "restored", "source": _ALL_OWED, "dest": None},
]

U = UserTurn
USER_TURN_TRANSITIONS: list[dict[str, Any]] = [
    # speech_started (server VAD).
    {"trigger": "heard", "source": [U.NONE, U.OPEN], "dest": U.OPEN},
    # The transcript is final or failed, a response started (the server has the item), or the socket dropped.
    {"trigger": "settled", "source": [U.NONE, U.OPEN], "dest": U.NONE},
]

V = Voice
VOICE_TRANSITIONS: list[dict[str, Any]] = [
    # The first assistant audio of a response: a server that refuses a voice change once audio
    # exists (OpenAI GA) has locked the voice; update() then refuses a change locally.
    {"trigger": "audio_produced", "source": V.FREE, "dest": V.LOCKED, "conditions": "voice_lock_applies"},
    {"trigger": "audio_produced", "source": [V.FREE, V.LOCKED], "dest": None},
]

A = UpdateAck
UPDATE_TRANSITIONS: list[dict[str, Any]] = [
    # session.update sent: the server answers each with session.updated, or an error naming it.
    {"trigger": "sent", "source": [A.NONE, A.PENDING], "dest": A.PENDING},
    # An answer: the oldest update is applied, or the one the error names is refused.
    {"trigger": "answered", "source": A.PENDING, "dest": None, "conditions": "updates_outstanding"},
    {"trigger": "answered", "source": A.PENDING, "dest": A.NONE},
    {"trigger": "answered", "source": A.NONE, "dest": None},  # unasked (a later session.updated)
    # No answer within response_created_timeout (update_timeout), or the session closed.
    {"trigger": "given_up", "source": A.PENDING, "dest": A.NONE},
    {"trigger": "given_up", "source": A.NONE, "dest": None},
]
UPDATE_ACTIONS: dict[enum.StrEnum, dict[str, list[str]]] = {
    A.PENDING: {"on_enter": ["arm_update_deadline"], "on_exit": ["disarm_update_deadline"]},
}

# How one machine's step moves another: the action a table names, and the
# machine and trigger it fires. Nothing else in the core crosses machines.
COUPLING: dict[str, tuple[str, str]] = {
    # The slot is requested, owed by the server or generating: the conversation is responding.
    "conversation_responds": ("conversation", "respond"),
    # The user spoke (VAD on): their turn is open until it is transcribed or answered.
    "user_turn_heard": ("user_turn", "heard"),
    # response.created: the user's turn is in the conversation, tool outputs are seen.
    "user_turn_settled": ("user_turn", "settled"),
    "owed_seen": ("owed", "seen"),
    # No response.created in time: a follow-up left to the server is asked for by the client.
    "owed_not_continued": ("owed", "not_continued"),
}


# Every machine, drawn as concurrent regions of one diagram (engine.core.diagram).
MACHINES: list[MachineSpec] = [
    MachineSpec(
        name="conversation",
        states=State,
        table=CONVERSATION_TRANSITIONS,
        initial=State.CONNECTING,
        actions=CONVERSATION_ACTIONS,
    ),
    MachineSpec(
        name="response",
        states=Phase,
        table=RESPONSE_TRANSITIONS,
        initial=Phase.IDLE,
        actions=RESPONSE_ACTIONS,
    ),
    MachineSpec(name="owed", states=Owed, table=OWED_TRANSITIONS, initial=Owed.NONE),
    MachineSpec(name="user_turn", states=UserTurn, table=USER_TURN_TRANSITIONS, initial=UserTurn.NONE),
    MachineSpec(name="voice", states=Voice, table=VOICE_TRANSITIONS, initial=Voice.FREE),
    MachineSpec(
        name="update",
        states=UpdateAck,
        table=UPDATE_TRANSITIONS,
        initial=UpdateAck.NONE,
        actions=UPDATE_ACTIONS,
    ),
]
CORE_MACHINES = {spec.name: spec for spec in MACHINES}
"""The conversation core's own machines, by name (the session's lifecycle is appended to MACHINES below)."""

# ------------------------------------------------------------------ session lifecycle
# The connection's life, stepped by the runtime's supervisor (engine.actors.supervisor) through
# engine.core.lifecycle.LifecycleMachine; its actions are done by the supervisor after each step.


class Lifecycle(enum.StrEnum):
    """Where the session's connection stands (``Session.lifecycle``). The values are the public names."""

    NEW = "new"
    CONNECTING = "connecting"
    OPEN = "open"
    ROLLOVER_DUE = "rollover_due"
    ROLLING_OVER = "rolling_over"
    RECONNECTING = "reconnecting"
    CLOSING = "closing"
    CLOSED = "closed"


L = Lifecycle
_UP = [L.OPEN, L.ROLLOVER_DUE]  # a ready socket carries traffic
_RUNNING = [L.CONNECTING, *_UP, L.ROLLING_OVER, L.RECONNECTING]
LIFECYCLE_TRANSITIONS: list[dict[str, Any]] = [
    # connect(): the first socket is being opened.
    {"trigger": "start", "source": L.NEW, "dest": L.CONNECTING},
    # The socket's session is ready (SessionReady): it carries traffic; after a drop, say so.
    {"trigger": "ready", "source": L.CONNECTING, "dest": L.OPEN},
    {"trigger": "ready", "source": L.RECONNECTING, "dest": L.OPEN, "after": "announce_reconnected"},
    {"trigger": "ready", "source": [*_UP, L.ROLLING_OVER, L.CLOSING, L.CLOSED], "dest": None},
    # max_session_duration elapsed: roll over at the next turn boundary. A socket that is
    # not up gets a fresh duration when it is ready.
    {"trigger": "rollover_due", "source": L.OPEN, "dest": L.ROLLOVER_DUE},
    {
        "trigger": "rollover_due",
        "source": [L.ROLLOVER_DUE, L.CONNECTING, L.ROLLING_OVER, L.RECONNECTING],
        "dest": None,
    },
    # After each batch of effects while due: roll over once the conversation is between turns.
    {
        "trigger": "turn_boundary",
        "source": L.ROLLOVER_DUE,
        "dest": L.ROLLING_OVER,
        "conditions": "between_turns",
    },
    # reset(): roll over now, whatever the turn.
    {"trigger": "reset", "source": _UP, "dest": L.ROLLING_OVER},
    {"trigger": "reset", "source": [L.CONNECTING, L.ROLLING_OVER, L.RECONNECTING], "dest": None},
    # The socket ended, planned (rolling_over) or not; before the first ready it is still connecting.
    {"trigger": "dropped", "source": [*_UP, L.ROLLING_OVER, L.RECONNECTING], "dest": L.RECONNECTING},
    {"trigger": "dropped", "source": L.CONNECTING, "dest": None},
    # close(), a fatal error, or the reconnect policy gave up: stop everything (bounded).
    {"trigger": "close", "source": [L.NEW, *_RUNNING], "dest": L.CLOSING},
    {"trigger": "finished", "source": L.CLOSING, "dest": L.CLOSED},
]
LIFECYCLE_ACTIONS: dict[enum.StrEnum, dict[str, list[str]]] = {
    L.OPEN: {"on_enter": ["arm_rollover"]},  # max_session_duration counts from ready
    L.ROLLING_OVER: {"on_enter": ["close_socket"]},  # the planned drop
}
MACHINES.append(
    MachineSpec(
        name="lifecycle",
        states=Lifecycle,
        table=LIFECYCLE_TRANSITIONS,
        initial=Lifecycle.NEW,
        actions=LIFECYCLE_ACTIONS,
    )
)

# ------------------------------------------------------------------ call policies
# The idle, call_clock and hangup machines (engine.core.policy_states, stepped by
# engine.core.policy.CallPolicies): off unless a CallPolicy enables them.
from engine.core.policy_states import POLICY_MACHINES  # noqa: E402

MACHINES.extend(POLICY_MACHINES)
