"""The effect interpreter: what the pure core asks for, done by the actors.

The core answers every input with a list of effects (:mod:`engine.core.effects`);
:meth:`Interpreter.apply` performs them in order, in the task that fed the core:

* ``Emit``: publish a user event (an ``Error``'s message is redacted first; a
  fatal one ends the session; ``session_expired`` rolls it over);
* ``Send``: encode a client event and queue it for the socket writer;
* ``StartTool``/``CancelTools``: the tool runner; ``ArmTimer``/``CancelTimer``:
  the timers; ``GateAudio``: the audio-in actor; ``DropAudioOut``: the
  dispatcher drops a cut response's queued audio.

With a :class:`~engine.core.policy.CallPolicy`, every published event is
also shown to the :class:`~engine.core.policy.CallPolicies`, whose timers
(``policy.*``) come back to them; their ``Say`` asks the core for a
response with that instruction, their ``HangupCall`` ends the session and
their ``RollOver`` (the budget's) rolls the server session over at the next
turn boundary, as ``max_session_duration`` does.

It owns those targets for one ``connect()``; what concerns the connection
(ready, fatal, expired, a due rollover) it hands to its :class:`Hooks`, the
supervisor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Protocol

import anyio
import attrs

from engine.actors.audio_in import AudioIn
from engine.actors.dispatch import Dispatcher
from engine.actors.group import Starter
from engine.actors.outbox import Outbox
from engine.actors.settings import SessionSettings
from engine.actors.timers import Timers
from engine.actors.tool_runner import ToolRunner, error_output
from engine.core import commands as cmd
from engine.core import effects as fx
from engine.core import events as ev
from engine.core.conversation import Conversation
from engine.core.lifecycle import Lifecycle
from engine.core.policy import END_CALL_TOOL, CallPolicies, HangupCall, PolicyEffect, RollOver, Say
from engine.errors import ErrorCode, ErrorSource
from engine.protocol.client import ResponseParams
from engine.protocol.codec import encode
from engine.protocol.config import AudioFormat
from engine.redaction import redact
from engine.tools import Tool

log = logging.getLogger(__name__)

ROLLOVER_TIMER = "session_rollover"
ROLL_OVER_CODES = frozenset({ErrorCode.SESSION_EXPIRED})
"""Server error codes that end the server's session, not the call: the session reconnects and restores."""
_DUE = Lifecycle.ROLLOVER_DUE.value


class Hooks(Protocol):
    """What the interpreter tells the connection supervisor."""

    @property
    def ending(self) -> bool:
        """The session is closing or closed: answers and timers are moot."""
        ...

    @property
    def lifecycle_state(self) -> str:
        """The lifecycle state's name (read after every batch of effects)."""
        ...

    def on_ready(self) -> None:
        """The socket's session is ready (``SessionReady`` was published)."""

    def on_fatal(self, error: ev.Error) -> None:
        """A fatal error was published: end the session."""

    def on_expired(self, code: str) -> None:
        """The server ended its session (``session_expired``): drop the socket and restore."""

    async def on_rollover_due(self) -> None:
        """``max_session_duration`` elapsed."""

    async def at_turn_boundary(self) -> None:
        """A batch of effects was applied while a rollover is due: roll over if between turns."""

    def on_hangup(self, reason: str) -> None:
        """A call policy ended the call (``idle``, ``max_duration``, ``end_call``, ``budget``): close it."""


class Interpreter:
    """Applies one conversation's effects to its audio-in actor, timers, tool runner and outbox."""

    def __init__(
        self,
        conv: Conversation,
        hooks: Hooks,
        *,
        group: Starter,
        dispatcher: Dispatcher,
        settings: SessionSettings,
        tools: Mapping[str, Tool],
        input_format: AudioFormat,
        clock: Callable[[], float],
    ) -> None:
        self.conv = conv
        self._hooks = hooks
        self._dispatcher = dispatcher
        self._settings = settings
        self._input_format = input_format
        self.outbox: Outbox | None = None  # the current socket's (set by the supervisor)
        self.audio = AudioIn(
            input_format,
            None,
            report_drop=self.report_audio_drop,
            report_misaligned=self.report_audio_misaligned,
            report_overflow=self.report_audio_overflow,
            chunk_ms=settings.audio_chunk_ms,
            hold_limit_ms=settings.hold_limit_ms,
            hold_policy=settings.hold_policy,
        )
        self.timers = Timers(group, self.on_timer, clock)
        self.runner = ToolRunner(
            group,
            tools,
            self.on_tool_answer,
            max_output_bytes=settings.max_item_bytes,
            report=dispatcher.publish,
        )
        self.audio.start_in(group)
        self.policies: CallPolicies | None = None  # set by the supervisor when a CallPolicy is given

    async def apply(self, effects: list[fx.Effect], *, sending: bool = True) -> None:
        """Perform ``effects`` in order (``sending=False``: the socket is going, nothing is sent)."""
        hooks = self._hooks
        for effect in effects:
            if isinstance(effect, fx.Emit):
                event = effect.event
                if type(event) is ev.Error:  # its message may echo what a peer sent: the key, too
                    event = redacted(event)
                    if event.code in ROLL_OVER_CODES and not event.fatal:
                        hooks.on_expired(event.code)
                self._dispatcher.publish(event)
                if self.policies is not None:
                    await self._apply_policy(self.policies.observe(event))
                if isinstance(event, ev.SessionReady):
                    hooks.on_ready()
                elif isinstance(event, ev.Error) and event.fatal:
                    hooks.on_fatal(event)
            elif isinstance(effect, fx.Send):
                if sending and self.outbox is not None:
                    try:
                        await self.outbox.send(encode(effect.event))
                    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                        log.debug("dropped a client event: the session is closing")
            else:
                await self._apply_other(effect)
        if hooks.lifecycle_state == _DUE:
            await hooks.at_turn_boundary()

    async def _apply_other(self, effect: fx.Effect) -> None:
        if isinstance(effect, fx.StartTool):
            if not self.runner.start(effect):
                await self.on_tool_answer(effect.call_id, error_output("too many tool calls at once"), True)
        elif isinstance(effect, fx.CancelTools):
            self.runner.cancel(effect.call_ids, effect.reason)
        elif isinstance(effect, fx.ArmTimer):
            self.timers.arm(effect.name, effect.delay)
        elif isinstance(effect, fx.CancelTimer):
            self.timers.cancel(effect.name)
        elif isinstance(effect, fx.GateAudio):
            await self.audio.set_gate(effect.open)
        elif isinstance(effect, fx.DropAudioOut):
            self._dispatcher.drop_response(effect.response_id)

    async def on_tool_answer(self, call_id: str, output: str, is_error: bool) -> None:
        """A tool call's output (or error output): to the core, unless the session is ending."""
        if not self._hooks.ending:
            answer = cmd.ToolOutput(call_id=call_id, output=output, is_error=is_error)
            await self.apply(self.conv.handle(answer))

    async def on_timer(self, name: str) -> None:
        """A deadline fired: the rollover's goes to the supervisor, the core's to the core."""
        if self._hooks.ending:
            return
        if name == ROLLOVER_TIMER:
            await self._hooks.on_rollover_due()
            return
        if name.startswith("policy.") and self.policies is not None:
            await self._apply_policy(self.policies.timer_fired(name))
            return
        await self.apply(self.conv.handle(cmd.TimerFired(name=name)))

    def on_played(self, item_id: str, ms: float) -> None:
        """The player acknowledged ``ms`` of an item: a goodbye being drained may be over."""
        if self.policies is not None and not self._hooks.ending:
            for effect in self.policies.played(item_id, ms):
                self._apply_policy_now(effect)

    async def _apply_policy(self, effects: list[PolicyEffect]) -> None:
        for effect in effects:
            if isinstance(effect, Say):
                params = ResponseParams(instructions=effect.instructions)
                await self.apply(self.conv.handle(cmd.CreateResponse(params=params)))
            elif isinstance(effect, RollOver):
                await self._hooks.on_rollover_due()
            else:
                self._apply_policy_now(effect)

    def _apply_policy_now(self, effect: PolicyEffect) -> None:
        if isinstance(effect, fx.ArmTimer):
            self.timers.arm(effect.name, effect.delay)
        elif isinstance(effect, fx.CancelTimer):
            self.timers.cancel(effect.name)
        elif isinstance(effect, HangupCall):
            log.info("a call policy ends the call: %s", effect.reason)
            self._hooks.on_hangup(effect.reason)
        else:
            raise TypeError(f"{effect!r} cannot be done without waiting")

    def report_audio_misaligned(self, dropped: int, where: str) -> None:
        """An incomplete sample was dropped where the caller's stream was cut."""
        fmt = self._input_format
        self._dispatcher.publish(
            ev.Error(
                code=ErrorCode.AUDIO_MISALIGNED,
                message=f"caller audio ended on an incomplete sample at {where}: {dropped} byte(s) dropped "
                f"({fmt.type} samples are {2 if fmt.type == 'audio/pcm' else 1} bytes)",
                source=ErrorSource.LOCAL,
            )
        )

    def report_audio_drop(self, in_episode: int) -> None:
        """Held audio beyond ``hold_limit_ms`` was dropped (the first drop of each outage is reported)."""
        if in_episode == 1:
            settings = self._settings
            self._dispatcher.publish(
                ev.Error(
                    code=ErrorCode.AUDIO_DROPPED,
                    message=f"caller audio held beyond {settings.hold_limit_ms} ms was dropped "
                    f"({settings.hold_policy})",
                    source=ErrorSource.LOCAL,
                )
            )

    def report_audio_overflow(self) -> None:
        """``send_audio_nowait`` found the audio-in actor's inbox full (reported once per overflow)."""
        self._dispatcher.publish(
            ev.Error(
                code=ErrorCode.AUDIO_DROPPED,
                message="caller audio given to send_audio_nowait() faster than it can be sent was dropped "
                "(drop_newest)",
                source=ErrorSource.LOCAL,
            )
        )


def end_call_tool() -> Tool:
    """The built-in ``end_call`` tool (``CallPolicy(end_call=True)``): the call policy ends the call.

    Its answer only tells the model the call is ending; the hang-up waits for the goodbye to be played.
    """

    def end_call() -> dict[str, str]:
        return {"status": "ending", "note": "The call ends once your goodbye has been heard."}

    return Tool(
        name=str(END_CALL_TOOL["name"]),
        description=str(END_CALL_TOOL["description"]),
        parameters=dict(END_CALL_TOOL["parameters"]),
        handler=end_call,
        cancel_on_interrupt=False,
    )


def redacted(event: ev.Error) -> ev.Error:
    """``event`` with any secret in its message masked."""
    message = redact(event.message)
    return event if message == event.message else attrs.evolve(event, message=message)
