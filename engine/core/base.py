"""What every part of the conversation core shares: options, fields, machines and plumbing.

The core is split along its seams into a chain of small classes, each a module
read in one sitting: this base; the response slot and its deadlines
(:mod:`engine.core.slot`); barge-in cutting (:mod:`engine.core.bargein`,
beside the playback ledger); the socket's life and the restore
(:mod:`engine.core.restore`); acknowledged updates (:mod:`engine.core.updates`);
out-of-band answers (:mod:`engine.core.out_of_band`); the server-event handlers
(:mod:`engine.core.handlers`); and the facade with its commands
(:mod:`engine.core.conversation`). Behaviour lives in the machines of
:mod:`engine.core.states`; the fields here are data the guards and actions read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from transitions import MachineError

from engine.core import events as ev
from engine.core.calls import CallLedger
from engine.core.effects import ArmTimer, CancelTimer, Effect, Emit, Send
from engine.core.history import History
from engine.core.metrics import Prices, TurnClock
from engine.core.playback import PlaybackLedger
from engine.core.states import (
    CORE_MACHINES,
    COUPLING,
    Owed,
    Phase,
    Plan,
    State,
    UserTurn,
    fire,
    plan_of,
    shared,
)
from engine.errors import ErrorCode, ErrorSource
from engine.protocol import client as c
from engine.protocol.config import SessionConfig
from engine.protocol.items import Item

log = logging.getLogger("engine.core.conversation")

RESPONSE_TIMER = "response_created"
STALL_TIMER = "response_stall"
CANCEL_TIMER = "response_cancel"
RETRY_TIMER = "retry_response"


@attrs.frozen(kw_only=True)
class CoreOptions:
    """Provider facts and limits the core needs.

    Attributes:
        response_created_timeout: seconds to wait for ``response.created`` after
            ``response.create`` before giving the slot up and reporting it.
        stall_timeout: seconds a generating response may send nothing before it
            is cancelled and reported; ``None`` waits forever.
        cancel_timeout: seconds to wait for ``response.done`` after a cancel
            before freeing the slot as if it had come (and reporting it).
        voice_locked_after_audio: the server rejects a voice change once audio
            was produced (OpenAI GA); refuse it locally instead.
        server_continues_after_tools: the server starts the follow-up response
            itself after tool outputs (Inworld's ``auto_tool_response``).
        max_history_items: items kept in the local mirror (and replayed on a restore);
            ``None`` keeps everything.
        supports_truncation: the server has ``conversation.item.truncate`` (and delete);
            without it a barge-in still cuts the local transcript but sends nothing.
        id_prefix: prefix of client-generated item and event ids.
        prices: the provider's price table: each ``TurnMetrics`` gets its ``cost``.
    """

    response_created_timeout: float = 10.0
    stall_timeout: float | None = 30.0
    cancel_timeout: float = 5.0
    voice_locked_after_audio: bool = True
    server_continues_after_tools: bool = False
    supports_truncation: bool = True
    max_history_items: int | None = 500
    id_prefix: str = "e"
    prices: Prices | None = None


DEFAULT_OPTIONS = CoreOptions()


class _Model:
    """A bare model for one machine: ``state``; its guards and actions are looked up by name on use.

    Binding every guard and action of every machine up front cost each session a few
    kilobytes; they run only on transitions, so resolving them then is cheap.
    """

    __slots__ = ("_owner", "state")

    def __init__(self, owner: CoreBase) -> None:
        self._owner = owner
        self.state = ""

    def __getattr__(self, name: str) -> Any:
        return self._owner._bind(name)


class CoreBase:
    """The core's data and plumbing; see the module docstring."""

    def __init__(
        self,
        config: SessionConfig,
        *,
        clock: Callable[[], float],
        history: Sequence[Item] = (),
        options: CoreOptions = DEFAULT_OPTIONS,
    ) -> None:
        self.config = config
        self.options = options
        self._clock = clock
        self._models: dict[str, _Model] = {}
        self._plans: dict[str, Plan] = {}
        for name, spec in CORE_MACHINES.items():
            model = self._models[name] = _Model(self)
            model.state = spec.initial.value
            # The shared transitions machine, read once into a lookup plan (see states.plan_of).
            self._plans[name] = plan_of(shared(spec.states, spec.table, spec.initial, spec.actions))
        self._conv = self._models["conversation"]
        self._resp = self._models["response"]
        self.history = History(history, max_items=options.max_history_items)
        self.calls = CallLedger()
        self._initial: list[Item] = list(history)
        self._held: list[c.ClientEvent] = []  # client events asked for before readiness
        self._response_id: str | None = None
        self._create_event_id: str | None = None  # while requested: the event id of our create
        self._waiting_since = 0.0  # when the slot started waiting for response.created
        self._interrupted: set[str | None] = set()  # responses cut off: their late events are dropped
        self._heard = 0.0  # when the generating response last sent an event (the stall deadline)
        self._timers: set[str] = set()  # the deadlines that are armed
        self.ledger = PlaybackLedger(config.output_format.bytes_per_second / 1000)
        self._audio_responses: list[str | None] = []  # recent responses with audio, oldest first
        self.turns = TurnClock(options.prices)
        self._announced: dict[str | None, None] = {}  # the newest item ids told to the app
        self._user_text: dict[str | None, str] = {}
        self._counter = 0
        self._out: list[Effect] = []
        # Told (machine, old, new) after every move of any core machine (engine.observe uses it).
        self.on_step: Callable[[str, str, str], None] | None = None

    def _bind(self, name: str) -> Callable[[], Any]:
        """A guard or action by name: a coupling fires another machine, anything else is ``_name``."""
        coupled = COUPLING.get(name)
        if coupled is not None:
            machine, trigger = coupled
            return lambda: self._step(machine, trigger)
        method: Callable[[], Any] = getattr(self, f"_{name}")
        return method

    # ------------------------------------------------------------------ inspection

    @property
    def state(self) -> State:
        """Whose turn it is."""
        return State(self._conv.state)

    @property
    def phase(self) -> Phase:
        """Where the response slot stands."""
        return Phase(self._resp.state)

    @property
    def owed(self) -> Owed:
        """Which response is owed once the slot frees, and why."""
        return Owed(self._models["owed"].state)

    @property
    def user_turn(self) -> UserTurn:
        """Whether the user's speech is heard but not yet in the conversation."""
        return UserTurn(self._models["user_turn"].state)

    @property
    def states(self) -> dict[str, str]:
        """Every machine's current state, by machine name."""
        return {name: model.state for name, model in self._models.items()}

    @property
    def response_id(self) -> str | None:
        """The id of the response in the slot, once the server has named it."""
        return self._response_id

    # ------------------------------------------------------------------ stepping

    def _step(self, machine: str, trigger: str) -> bool:
        """Trigger one machine; an illegal trigger is reported as an ``Error``, not raised.

        A conversation move is told to the application (``StateChanged``); every move to ``on_step``.
        """
        model = self._models[machine]
        old = model.state
        try:
            moved = fire(self._plans[machine], model, trigger)
        except MachineError:
            moved = False
        if not moved:
            if machine == "conversation":
                message = f"{trigger!r} is not allowed in state {old!r}"
            elif machine == "response":
                message = f"response {trigger!r} is not allowed in phase {old!r}"
            else:
                message = f"{machine} {trigger!r} is not allowed in {old!r}"
            self._error(ErrorCode.ILLEGAL_TRANSITION, message, source=ErrorSource.PROTOCOL)
            return False
        if model.state != old:
            if machine == "conversation":
                self._emit(ev.StateChanged(old=State(old), new=State(model.state)))
            if self.on_step is not None:
                self.on_step(machine, old, model.state)
        return True

    def _fire(self, trigger: str) -> bool:
        return self._step("conversation", trigger)

    def _fire_response(self, trigger: str) -> bool:
        return self._step("response", trigger)

    def _owe(self, trigger: str) -> None:
        self._step("owed", trigger)

    # ------------------------------------------------------------------ plumbing

    def _arm(self, name: str, delay: float) -> None:
        out = self._out
        if out and out[-1] == CancelTimer(name=name):
            out.pop()  # re-armed in the same step (a reflexive transition): arming replaces
        self._timers.add(name)
        out.append(ArmTimer(name=name, delay=delay))

    def _disarm(self, *names: str) -> None:
        for name in names:
            if name in self._timers:
                self._timers.discard(name)
                self._out.append(CancelTimer(name=name))

    def _send(self, event: c.ClientEvent) -> None:
        self._out.append(Send(event))

    def _send_or_hold(self, event: c.ClientEvent) -> None:
        if self.state is State.CONNECTING:
            self._held.append(event)  # sent right after the initial history
        elif self.state is State.RECONNECTING:
            # Items are in the mirrored history, which the restore replays; buffer
            # commands (commit, clear) concern a server buffer that is gone.
            log.debug("not sent while reconnecting: %s", event.TYPE)
        elif self.state is not State.CLOSED:
            self._send(event)

    def _emit(self, event: ev.UserEvent) -> None:
        self._out.append(Emit(event))

    def _error(
        self, code: str, message: str, *, fatal: bool = False, source: str = ErrorSource.SERVER
    ) -> None:
        level = logging.ERROR if fatal else logging.WARNING
        log.log(level, "%s error %s: %s", source, code, message)
        self._emit(ev.Error(code=code, message=message, fatal=fatal, source=source))

    def _new_id(self, kind: str) -> str:
        self._counter += 1
        return f"{kind}_{self.options.id_prefix}{self._counter}"

    def _flush(self) -> list[Effect]:
        out, self._out = self._out, []
        return out
