"""One placed call, run by a host: the agent's Session, the simulated caller, and checkpoints.

No Ray here (the host wraps it): :func:`run_placed_call` runs under any anyio
backend. A fresh call greets if its agent does, then the caller speaks its
turns, each once the previous answer is done. A checkpoint is reported after
the greeting and every answered turn, and when a tool call is issued or
answered: the mirrored conversation, the caller's position, the counts.

A call given a checkpoint resumes: tool calls it left open are run here first
(a tool whose host died mid-call runs again: :func:`engine.scale.spec.current_call`
gives it the call id to dedupe on) and their outputs join the history, which
the new Session sends as its initial conversation with a note not to greet
again; a turn in flight is answered, then the caller goes on from its position.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import attrs

from engine.actors.group import ActorGroup
from engine.actors.session import Session
from engine.actors.supervisor import POLICY_END
from engine.actors.tool_runner import ToolRunner
from engine.core import events as ev
from engine.core.conversation import CoreOptions
from engine.core.effects import StartTool
from engine.core.history import restorable  # the reconnect restore's own conversion
from engine.core.restore import RESUME_NOTE
from engine.demo import speech
from engine.gateway.agent import Agent
from engine.observe.logs import call_context
from engine.profiles import Profile
from engine.protocol.config import SessionConfig
from engine.protocol.items import Item
from engine.providers import Provider, Secret
from engine.scale.spec import (
    _CURRENT,
    CallContext,
    CallOutcome,
    CallSpec,
    Checkpoint,
    Say,
    Turn,
    TurnFigures,
    resolve_agent,
)

log = logging.getLogger(__name__)

Report = Callable[[Checkpoint], Awaitable[None]]
Observe = Callable[[Session, CallContext], None]
FRAME_MS = 20

_EVENTS = (ev.ToolCall, ev.ToolResult, ev.TurnMetrics, ev.AudioOut, ev.Closed)


class _Ended(Exception):
    """The agent's side ended the call by itself (a call policy: ``end_call``, idle, maximum length)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@attrs.define
class _Progress:
    """The call's position, carried from checkpoint to checkpoint."""

    sent: int = 0
    done: int = 0
    greeted: bool = False
    tool_calls: int = 0
    turns: list[TurnFigures] = attrs.Factory(list)

    @classmethod
    def of(cls, checkpoint: Checkpoint | None) -> _Progress:
        if checkpoint is None:
            return cls()
        return cls(
            checkpoint.sent,
            checkpoint.done,
            checkpoint.greeted,
            checkpoint.tool_calls,
            list(checkpoint.turns),
        )

    def checkpoint(self, items: tuple[Item, ...]) -> Checkpoint:
        return Checkpoint(
            items=items,
            sent=self.sent,
            done=self.done,
            greeted=self.greeted,
            tool_calls=self.tool_calls,
            turns=tuple(self.turns),
        )


def observe_call(session: Session, call: CallContext, **providers: Any) -> None:
    """OpenTelemetry for a placed call, labelled with its host (``engine.host``) and attempt.

    Nothing when ``opentelemetry-api`` is not installed; with no SDK configured, next to
    nothing (``engine.observe``). ``providers``: ``tracer_provider``, ``meter_provider``.
    """
    try:
        from engine.observe import instrument

        attributes = {"engine.host": call.host, "engine.call.attempt": str(call.attempt)}
        instrument(session, call_id=call.call_id, attributes=attributes, **providers)
    except ImportError:
        return


async def run_placed_call(
    call_id: str,
    host: str,
    spec: CallSpec,
    checkpoint: Checkpoint | None,
    attempt: int,
    report: Report,
    observe: Observe = observe_call,
) -> CallOutcome:
    """Run ``spec`` to its end (resuming from ``checkpoint`` if given); ``report`` gets each checkpoint.

    ``observe(session, call)`` runs before the session connects (default: :func:`observe_call`).

    Raises:
        UnknownAgent: the spec's agent path names no Agent.
        ValueError: no provider, here or on the agent; an endpoint key missing on this host.
        SessionClosed, HandshakeError, TransportError: the session failed.
    """
    context = CallContext(call_id=call_id, host=host, attempt=attempt, metadata=spec.metadata)
    token = _CURRENT.set(context)
    try:
        with call_context(call_id, host=host, attempt=str(attempt)):  # every log record names both
            return await _run(context, spec, checkpoint, report, observe)
    finally:
        _CURRENT.reset(token)


async def _run(
    context: CallContext, spec: CallSpec, checkpoint: Checkpoint | None, report: Report, observe: Observe
) -> CallOutcome:
    attempt = context.attempt
    agent = resolve_agent(spec.agent)
    provider = spec.endpoint.build() if spec.endpoint is not None else agent.provider
    progress = _Progress.of(checkpoint)
    source = agent
    if checkpoint is not None:
        # This session's own ids must not collide with the restored ones (the old session's).
        prefix = f"r{attempt}e"
        provider = _IdPrefixed(provider, prefix) if provider is not None else None
        items = [r for r in map(restorable, checkpoint.items) if r is not None]
        outputs = await answer_open_calls(agent, checkpoint, prefix)
        if outputs:
            progress.tool_calls += len(outputs)
            items += outputs
            await report(progress.checkpoint(tuple(items)))
        source = copy.copy(agent)
        source.history = (*items, Item.system_text(RESUME_NOTE, id=f"item_{prefix}note"))
    session = source.session(provider=provider)
    observe(session, context)
    call = _Caller(session, progress, report, spec.caller.turns)
    end_reason = "completed"
    async with session.connect():
        try:
            if (checkpoint is None and agent.greet) or (
                checkpoint is not None and _owes_answer(agent, progress)
            ):
                await session.create_response()
                await call.answer()
            await call.speak()
        except _Ended as ended:  # a normal end, before the script's: the rest is not spoken
            end_reason = ended.reason
        transcript = tuple(
            (i.role or "?", i.text)
            for i in session.history
            if i.type == "message" and i.role != "system" and i.text
        )
    return CallOutcome(
        call_id=context.call_id,
        host=context.host,
        end_reason=end_reason,
        transcript=transcript,
        turns=tuple(progress.turns),
        tool_calls=progress.tool_calls,
        failovers=attempt,
    )


def _owes_answer(agent: Agent, progress: _Progress) -> bool:
    """Whether the checkpoint stopped inside a turn: a spoken turn (or the greeting) not yet answered."""
    return progress.sent > progress.done or (agent.greet and not progress.greeted)


async def answer_open_calls(agent: Agent, checkpoint: Checkpoint, prefix: str) -> list[Item]:
    """Run the tool calls ``checkpoint`` left open, as the session's tool runner would; their outputs."""
    calls = checkpoint.open_calls()
    if not calls:
        return []
    answers: dict[str, str] = {}

    async def answer(call_id: str, output: str, is_error: bool) -> None:
        answers[call_id] = output

    async with anyio.create_task_group() as tg:
        runner = ToolRunner(ActorGroup(tg), {t.name: t for t in agent.tools}, answer)
        for item in calls:
            log.info("resuming: running the open tool call %s (%s) again", item.call_id, item.name)
            runner.start(
                StartTool(call_id=item.call_id or "", name=item.name or "", arguments=item.arguments or "")
            )
    return [
        Item.function_call_output(i.call_id or "", answers[i.call_id or ""], id=f"item_{prefix}out{n}")
        for n, i in enumerate(calls)
    ]


class _IdPrefixed:
    """A provider whose sessions make ids with their own prefix (a resumed call's never clash)."""

    def __init__(self, inner: Provider, prefix: str) -> None:
        self._inner = inner
        self._prefix = prefix

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def profile(self) -> Profile:
        return self._inner.profile

    @property
    def api_key(self) -> Any:  # dial() calls a key function for every connection
        return getattr(self._inner, "api_key", None)

    def endpoint(self, key: Secret | None = None) -> tuple[str, dict[str, str]]:
        return self._inner.endpoint(key)

    def prepare(self, config: SessionConfig) -> SessionConfig:
        return self._inner.prepare(config)

    def core_options(self) -> CoreOptions:
        return attrs.evolve(self._inner.core_options(), id_prefix=self._prefix)


class _Caller:
    """The simulated caller on one session: speaks each turn once the previous answer is done."""

    def __init__(
        self, session: Session, progress: _Progress, report: Report, turns: tuple[Turn, ...]
    ) -> None:
        self._session = session
        self._progress = progress
        self._report = report
        self._turns = turns
        self._events = session.events(*_EVENTS)  # subscribed before connect: nothing is missed

    async def speak(self) -> None:
        """The script from the caller's position to its end."""
        progress = self._progress
        while progress.done < len(self._turns):
            turn = self._turns[progress.done]
            progress.sent = progress.done + 1
            if isinstance(turn, Say):
                await self._session.send_text(turn.text)
            else:
                rate = self._session.config.input_format.rate or 24000
                pcm = speech(turn.seconds, rate=rate)
                step = rate * 2 * FRAME_MS // 1000
                for offset in range(0, len(pcm), step):
                    await self._session.send_audio(pcm[offset : offset + step])
                if self._session.config.turn_detection is None:  # manual turns: the caller ends its own
                    await self._session.commit_audio()
                    await self._session.create_response()
            await self.answer()

    async def answer(self) -> None:
        """Wait for the current turn's end, checkpointing on tool calls and answers; hear its audio."""
        progress, session = self._progress, self._session
        played: dict[str, float] = {}
        async for event in self._events:
            if isinstance(event, ev.AudioOut) and event.item_id is not None:
                played[event.item_id] = played.get(event.item_id, 0.0) + event.duration_ms
            elif isinstance(event, ev.ToolCall):
                await self._report(progress.checkpoint(session.history))
            elif isinstance(event, ev.ToolResult):
                progress.tool_calls += 1
                await self._report(progress.checkpoint(session.history))
            elif isinstance(event, ev.Closed):
                if event.error is None and event.reason.startswith(POLICY_END):
                    raise _Ended(event.reason)
                break  # failed or closed from outside: said below
            elif isinstance(event, ev.TurnMetrics):
                # An instant speaker: everything received was heard (or the next turn is a barge-in).
                for item_id, ms in played.items():
                    session.audio_played(item_id, ms)
                figures = TurnFigures(
                    first_audio=event.time_to_first_audio, total=event.total_seconds, tool=event.tool_seconds
                )
                progress.turns.append(figures)
                if progress.sent > progress.done:
                    progress.done = progress.sent
                else:
                    progress.greeted = True
                await self._report(progress.checkpoint(session.history))
                return
        raise RuntimeError(f"the session ended before the answer to turn {progress.sent}")
