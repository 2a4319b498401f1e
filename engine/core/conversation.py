"""The conversation core: server events and commands in, effects out.

Pure and synchronous (sans-IO): no sockets, no tasks, no sleeping, and no
clock but the one passed in. Two entry points, as wsproto has: :meth:`receive`
takes one decoded server event, :meth:`handle` one command
(:mod:`engine.core.commands`); each returns the effects the runtime must carry
out, in order. The convenience methods (``send_text``, ``tool_result`` ...)
build the command and hand it to :meth:`Conversation.handle`.

The transition rules, guards, entry/exit actions and the coupling of the
machines live in :mod:`engine.core.states`; the code around them is split
along its seams (see :mod:`engine.core.base`). An event that is illegal in the
current state is reported as a non-fatal ``Error`` and otherwise ignored; the
machines stay in a declared state. Misuse of a command (a wrong argument type
or value) raises when the command is built, before anything changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from engine.core import commands as cmd
from engine.core.base import DEFAULT_OPTIONS, CoreOptions
from engine.core.effects import CancelTools, Effect, Emit, GateAudio
from engine.core.events import RawEvent
from engine.core.handlers import BENIGN_ERRORS, FATAL_ERROR_CODES, FATAL_ERROR_TYPES, Handlers
from engine.core.restore import LOST_TURN_NOTE, RESUME_NOTE
from engine.core.states import State, Voice
from engine.errors import ErrorCode, ErrorSource, UpdateRejected, UsageTypeError
from engine.protocol import client as c
from engine.protocol.codec import AnyServerEvent
from engine.protocol.config import SessionConfig
from engine.protocol.items import Item
from engine.protocol.server import UnknownServerEvent

__all__ = [
    "BENIGN_ERRORS",
    "FATAL_ERROR_CODES",
    "FATAL_ERROR_TYPES",
    "LOST_TURN_NOTE",
    "RESUME_NOTE",
    "Conversation",
    "CoreOptions",
    "Observer",
]

Observer = Callable[[Any, list[Effect]], None]
"""Told every input (a server event or a command) with the effects it produced (recording)."""


class Conversation(Handlers):
    """One realtime conversation's protocol state. See the module docstring."""

    def __init__(
        self,
        config: SessionConfig,
        *,
        clock: Callable[[], float],
        history: Sequence[Item] = (),
        options: CoreOptions = DEFAULT_OPTIONS,
    ) -> None:
        super().__init__(config, clock=clock, history=history, options=options)
        # Tables of plain functions shared by every conversation (bound methods per session cost memory).
        self._handlers = _handlers_of(self)
        self._commands = _COMMANDS
        self.observer: Observer | None = None

    # ------------------------------------------------------------------ the two entry points

    def receive(self, event: AnyServerEvent) -> list[Effect]:
        """Feed one decoded server event."""
        handler = self._handlers.get(type(event))
        if handler is None or self._conv.state == "closed":
            out: list[Effect] = []  # ping, unmodelled events: nothing to do, unless asked for raw
            if self.raw_events and handler is None and self._conv.state != "closed":
                kind = event.type if isinstance(event, UnknownServerEvent) else event.TYPE
                out.append(Emit(RawEvent(type=kind, event=event)))
        elif self._asks and self._aside(event):  # an out-of-band response's (engine.core.out_of_band)
            out, self._out = self._out, []
        else:
            handler(self, event)
            out, self._out = self._out, []
        if self.observer is not None:
            self.observer(event, out)
        return out

    def handle(self, command: cmd.Command) -> list[Effect]:
        """Carry out one command (see :mod:`engine.core.commands`).

        Raises:
            TypeError: ``command`` is not a command.
            UpdateRejected: an :class:`~engine.core.commands.Update` the server would refuse.
        """
        run = self._commands.get(type(command))
        if run is None:
            raise UsageTypeError(f"handle(): not a core command: {type(command).__name__}")
        out = run(self, command)
        if self.observer is not None:
            self.observer(command, out)
        return out

    # ------------------------------------------------------------------ convenience methods

    def connection_opened(self) -> list[Effect]:
        """A socket is up; wait for ``session.created``."""
        return self.handle(cmd.ConnectionOpened())

    def connection_lost(self) -> list[Effect]:
        """The socket dropped: hold audio, end the in-flight response, prepare the restore."""
        return self.handle(cmd.ConnectionLost())

    def close(self) -> list[Effect]:
        """End the conversation; running tools are cancelled."""
        return self.handle(cmd.Close())

    def protocol_error(self, message: str, code: str = ErrorCode.PROTOCOL_ERROR) -> list[Effect]:
        """Report a server message that could not be decoded; the conversation goes on."""
        return self.handle(cmd.ProtocolFault(message=message, code=code))

    def send_text(self, text: str) -> list[Effect]:
        """Add a user text message and ask for a response to it."""
        return self.handle(cmd.SendText(text=text))

    def add_item(self, item: Item) -> list[Effect]:
        """Add any conversation item without asking for a response."""
        return self.handle(cmd.AddItem(item=item))

    def create_response(self, params: c.ResponseParams | None = None) -> list[Effect]:
        """Ask for a response; coalesced with any already in flight."""
        return self.handle(cmd.CreateResponse(params=params))

    def cancel_response(self) -> list[Effect]:
        """Cancel the response in flight (deferred until it has an id). No-op when idle."""
        return self.handle(cmd.CancelResponse())

    def interrupt(self) -> list[Effect]:
        """Cut the assistant off now, as a barge-in would, and cancel its response."""
        return self.handle(cmd.Interrupt())

    def commit_audio(self) -> list[Effect]:
        """Commit the input buffer as a user turn (manual turns)."""
        return self.handle(cmd.CommitAudio())

    def clear_audio(self) -> list[Effect]:
        """Discard the server's uncommitted input audio."""
        return self.handle(cmd.ClearAudio())

    def update(self, config: SessionConfig) -> list[Effect]:
        """Send a new configuration. Raises :class:`UpdateRejected` if the server would refuse it."""
        return self.handle(cmd.Update(config=config))

    def ask(
        self,
        prompt: str,
        *,
        instructions: str | None = None,
        context: str = "conversation",
        timeout: float = 30.0,
    ) -> list[Effect]:
        """Ask for an out-of-band answer (:class:`~engine.core.commands.Ask`); ``newest_ask`` names it."""
        command = cmd.Ask(prompt=prompt, instructions=instructions, context=context, timeout=timeout)
        return self.handle(command)

    def tool_result(self, call_id: str, output: str, *, is_error: bool = False) -> list[Effect]:
        """Answer a call exactly once; the follow-up response is coalesced."""
        return self.handle(cmd.ToolOutput(call_id=call_id, output=output, is_error=is_error))

    def timer_fired(self, name: str) -> list[Effect]:
        """A timer armed by an ``ArmTimer`` effect expired."""
        return self.handle(cmd.TimerFired(name=name))

    def audio_played(self, item_id: str, ms: float) -> list[Effect]:
        """The application's speaker has played ``ms`` of item ``item_id`` (cumulative)."""
        return self.handle(cmd.AudioPlayed(item_id=item_id, ms=ms))

    # ------------------------------------------------------------------ commands

    def _refuse_closed(self, command: str) -> bool:
        if self.state is not State.CLOSED:
            return False
        self._error(
            ErrorCode.SESSION_CLOSED, f"{command}() after the session closed", source=ErrorSource.LOCAL
        )
        return True

    def _protocol_fault(self, command: cmd.ProtocolFault) -> list[Effect]:
        self._error(command.code, command.message, source=ErrorSource.PROTOCOL)
        return self._flush()

    def _send_text(self, command: cmd.SendText) -> list[Effect]:
        if not self._refuse_closed("send_text"):
            item = Item.user_text(command.text, id=self._new_id("item"))
            self._send_or_hold(c.ConversationItemCreate(item=item))
            self.history.add(item)
            self._request_response()
        return self._flush()

    def _add_item(self, command: cmd.AddItem) -> list[Effect]:
        if not self._refuse_closed("add_item"):
            item = command.item
            if item.id is None:
                item = attrs.evolve(item, id=self._new_id("item"))
            self._send_or_hold(c.ConversationItemCreate(item=item))
            self.history.add(item)
        return self._flush()

    def _create_response(self, command: cmd.CreateResponse) -> list[Effect]:
        self._request_response(command.params)
        return self._flush()

    def _cancel_response(self, command: cmd.CancelResponse) -> list[Effect]:
        if not self._refuse_closed("cancel_response"):
            self._owe("drop")
            self._cancel(send=True)
        return self._flush()

    def _interrupt(self, command: cmd.Interrupt) -> list[Effect]:
        if not self._refuse_closed("interrupt"):
            self._barge_in(server_cancels=False)
        return self._flush()

    def _buffer_command(self, name: str, event: c.ClientEvent) -> list[Effect]:
        if not self._refuse_closed(name):
            self._send_or_hold(event)
        return self._flush()

    def _update(self, command: cmd.Update) -> list[Effect]:
        config = command.config
        if self._refuse_closed("update"):
            return self._flush()
        if self._models["voice"].state == Voice.LOCKED and config.voice != self.config.voice:
            raise UpdateRejected(
                f"cannot change the voice from {self.config.voice!r} to {config.voice!r}: "
                "the server refuses a voice change once assistant audio exists"
            )
        before, self.config = self.config, config
        self._send_update(config, before)  # pending until the server answers (engine.core.updates)
        return self._flush()

    def _tool_output(self, command: cmd.ToolOutput) -> list[Effect]:
        if self._refuse_closed("tool_result"):
            return self._flush()
        call_id = command.call_id
        call = self.calls.get(call_id)
        if call is None or call.answered:
            why = "unknown call" if call is None else "call already answered"
            self._error(
                ErrorCode.DUPLICATE_TOOL_OUTPUT,
                f"output for {call_id!r} dropped: {why}",
                source=ErrorSource.LOCAL,
            )
            return self._flush()
        self._answer(call_id, command.output, is_error=command.is_error)
        self._maybe_continue_after_tools()
        return self._flush()

    def _audio_played(self, command: cmd.AudioPlayed) -> list[Effect]:
        ms = command.ms
        if self.ledger.played(command.item_id, ms) and ms > 0:
            # Only audio of this turn counts (the tail of an earlier answer may still be playing).
            started = self.ledger.first_delta_at(self.ledger.response_of(command.item_id))
            received = self.turns.get("first_audio_received")
            if started is not None and received is not None and started >= received:
                self.turns.mark("first_audio_played", self._clock())
        return self._flush()

    def _timer_fired(self, command: cmd.TimerFired) -> list[Effect]:
        self._deadline(command.name)
        return self._flush()

    def _close(self) -> list[Effect]:
        if self.state is State.CLOSED:
            return []
        running = tuple(call.call_id for call in self.calls.running())
        if running:
            self._out.append(CancelTools(call_ids=running, reason="closed"))
        self._out.append(GateAudio(False))
        self._give_up_updates()
        self._give_up_asks()
        self._fire("close")  # entering closed disarms every deadline
        return self._flush()


_HANDLER_TABLES: dict[type, dict[type, Callable[[Any, Any], None]]] = {}


def _handlers_of(conv: Conversation) -> dict[type, Callable[[Any, Any], None]]:
    """The server-event handlers of ``conv``'s class, as plain functions, built once per class."""
    table = _HANDLER_TABLES.get(type(conv))
    if table is None:
        table = _HANDLER_TABLES[type(conv)] = {
            kind: method.__func__  # type: ignore[attr-defined]
            for kind, method in conv._handler_table().items()
        }
    return table


_COMMANDS: dict[type, Callable[[Any, Any], list[Effect]]] = {
    cmd.ConnectionOpened: lambda self, _: self._flush(),
    cmd.ConnectionLost: lambda self, _: self._connection_lost(),
    cmd.Close: lambda self, _: self._close(),
    cmd.ProtocolFault: lambda self, command: self._protocol_fault(command),
    cmd.SendText: lambda self, command: self._send_text(command),
    cmd.AddItem: lambda self, command: self._add_item(command),
    cmd.CreateResponse: lambda self, command: self._create_response(command),
    cmd.CancelResponse: lambda self, command: self._cancel_response(command),
    cmd.Interrupt: lambda self, command: self._interrupt(command),
    cmd.CommitAudio: lambda self, _: self._buffer_command("commit_audio", c.InputAudioBufferCommit()),
    cmd.ClearAudio: lambda self, _: self._buffer_command("clear_audio", c.InputAudioBufferClear()),
    cmd.Update: lambda self, command: self._update(command),
    cmd.Ask: lambda self, command: self._ask(command),
    cmd.ToolOutput: lambda self, command: self._tool_output(command),
    cmd.AudioPlayed: lambda self, command: self._audio_played(command),
    cmd.TimerFired: lambda self, command: self._timer_fired(command),
}
"""What each command runs (plain functions taking the conversation first), shared by every conversation."""
