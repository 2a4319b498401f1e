"""What the dispatcher places and what it reports: plain, picklable values.

A :class:`CallSpec` names the agent (an import path, resolved on the host),
who is on the other end (a :class:`SimulatedCaller`: scripted turns for tests,
evaluations and batch jobs), metadata and an optional provider. Progress comes
back as events (:class:`Queued`, :class:`Placed`, :class:`Checkpointed`,
:class:`Refused`, :class:`FailedOver`, :class:`Finished`, :class:`Failed`);
the end of a call is a :class:`CallOutcome`. A :class:`Checkpoint` is what
resumes a call on another host (docs/scale-dispatch.md).

Outbound dialling of a real number is not a destination here: it needs a
carrier's REST API and a gateway the carrier can reach (``engine serve``).
"""

from __future__ import annotations

import contextvars
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from engine.errors import UsageTypeError, UsageValueError
from engine.protocol.items import Item
from engine.providers import Inworld, OpenAI

if TYPE_CHECKING:
    from engine.gateway.agent import Agent

_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class UnknownAgent(UsageValueError):
    """A spec's agent path does not name an ``engine.Agent`` (or a factory of one)."""


@attrs.frozen
class Say:
    """A text turn: ``session.send_text(text)``."""

    text: str = attrs.field(validator=attrs.validators.instance_of(str))


@attrs.frozen
class Speak:
    """An audio turn: ``seconds`` of the demo's synthetic speech (``engine.demo.speech``).

    The server's VAD ends the turn; with manual turns (``turn_detection=None``) the caller
    commits the audio and asks for the answer itself.
    """

    seconds: float = attrs.field(converter=float)

    @seconds.validator
    def _positive(self, _: Any, value: float) -> None:
        if not 0 < value <= 60:
            raise UsageValueError(f"Speak seconds must be in (0, 60], got {value!r}")


Turn = Say | Speak


def _turns(value: Any) -> tuple[Turn, ...]:
    if isinstance(value, str | Say | Speak):
        value = (value,)
    turns = tuple(Say(t) if isinstance(t, str) else t for t in value)
    for number, turn in enumerate(turns):
        if not isinstance(turn, Say | Speak):
            raise UsageTypeError(
                f"caller turn {number} must be a str, Say or Speak, got {type(turn).__name__}"
            )
    return turns


@attrs.frozen
class SimulatedCaller:
    """A scripted caller: each turn is spoken once the previous answer is done."""

    turns: tuple[Turn, ...] = attrs.field(converter=_turns)


def _metadata(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise UsageTypeError(f"metadata must be a mapping of str to str, got {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise UsageTypeError(f"metadata must map str to str, got {key!r}: {type(item).__name__}")
    return dict(value)


def _check_agent(_: Any, __: Any, value: Any) -> None:
    if not isinstance(value, str) or not _PATH.match(value):
        raise UsageValueError(f"agent must be an import path 'module:attribute', got {value!r}")


def _check_caller(_: Any, __: Any, value: Any) -> None:
    if not isinstance(value, SimulatedCaller):
        raise UsageTypeError(f"caller must be a SimulatedCaller, got {type(value).__name__}")


@attrs.frozen(kw_only=True)
class Endpoint:
    """Where the host's sessions connect, instead of the agent's own provider.

    The key is never in the spec (a ``Secret`` does not pickle, and specs travel
    through Ray's object store): the host reads it from its environment variable
    ``key_env``; ``key_env=None`` sends a placeholder, for a server that checks
    none (``engine.server.LocalServer``).
    """

    url: str = attrs.field(validator=attrs.validators.instance_of(str))
    provider: str = attrs.field(default="inworld", validator=attrs.validators.in_(("inworld", "openai")))
    key_env: str | None = "INWORLD_API_KEY"

    def build(self) -> Inworld | OpenAI:
        """The provider, with the key read from this process's environment.

        Raises:
            ValueError: ``key_env`` is not set here (a ``UsageValueError``).
        """
        if self.key_env is None:
            key = "engine-local-placeholder"
        else:
            key = os.environ.get(self.key_env, "")
            if not key:
                raise UsageValueError(f"the host has no API key: set {self.key_env} in its environment")
        return (
            Inworld(api_key=key, url=self.url)
            if self.provider == "inworld"
            else OpenAI(api_key=key, url=self.url)
        )


def _check_endpoint(_: Any, __: Any, value: Any) -> None:
    if value is not None and not isinstance(value, Endpoint):
        raise UsageTypeError(f"endpoint must be an Endpoint or None, got {type(value).__name__}")


@attrs.frozen(kw_only=True)
class CallSpec:
    """One call to place.

    Attributes:
        agent: ``module:attribute`` naming an ``engine.Agent`` or a function returning one
            (imported on the host, so the module must be importable there).
        caller: who speaks: a :class:`SimulatedCaller`.
        metadata: free labels, given to tools through :func:`current_call`.
        endpoint: overrides the agent's provider (the key is read on the host, never carried).
        max_failovers: how many times the call may move to another host before it fails.

    Raises:
        ValueError: a malformed agent path, ``max_failovers`` < 0 (``UsageValueError``).
        TypeError: a caller, endpoint or metadata of the wrong type (``UsageTypeError``).
    """

    agent: str = attrs.field(validator=_check_agent)
    caller: SimulatedCaller = attrs.field(validator=_check_caller)
    metadata: dict[str, str] = attrs.field(factory=dict, converter=_metadata)
    endpoint: Endpoint | None = attrs.field(default=None, validator=_check_endpoint)
    max_failovers: int = attrs.field(default=3, validator=attrs.validators.ge(0))


def resolve_agent(path: str) -> Agent:
    """The Agent ``path`` names (an Agent, or a function called with no arguments that returns one).

    Raises:
        UnknownAgent: the module does not import, lacks the attribute, or it is not an Agent.
    """
    from engine.gateway.agent import Agent
    from engine.gateway.serve import import_named

    try:
        found = import_named(path)
    except ValueError as exc:
        raise UnknownAgent(f"agent {path!r}: {exc}") from None
    if not isinstance(found, Agent) and callable(found):
        found = found()
    if not isinstance(found, Agent):
        raise UnknownAgent(
            f"agent {path!r} is a {type(found).__name__}, not an engine.Agent or a factory of one"
        )
    return found


# ---------------------------------------------------------------------- progress and results


@attrs.frozen(kw_only=True)
class TurnFigures:
    """One answered turn's timings (seconds; ``None`` where the turn had no such moment)."""

    first_audio: float | None
    total: float | None
    tool: float | None = None


@attrs.frozen(kw_only=True)
class Checkpoint:
    """What resumes a call elsewhere: the conversation, the caller's position, and the counts so far.

    ``sent`` turns of the script were spoken, ``done`` of them answered (``sent == done + 1``
    while a turn is in flight); ``greeted``: the agent's greeting was answered already.
    """

    items: tuple[Item, ...]
    sent: int
    done: int
    greeted: bool
    tool_calls: int
    turns: tuple[TurnFigures, ...] = ()

    def open_calls(self) -> list[Item]:
        """``function_call`` items without an output: the tool calls a resume must answer."""
        answered = {i.call_id for i in self.items if i.type == "function_call_output"}
        return [i for i in self.items if i.type == "function_call" and i.call_id not in answered]


@attrs.frozen(kw_only=True)
class CallOutcome:
    """How a call ended: its transcript as ``(role, text)`` pairs, its turns, and where it ran."""

    call_id: str
    host: str
    end_reason: str
    transcript: tuple[tuple[str, str], ...]
    turns: tuple[TurnFigures, ...]
    tool_calls: int
    failovers: int


@attrs.frozen(kw_only=True)
class Queued:
    """The call waits for capacity (at most the dispatcher's ``queue_timeout``)."""

    call_id: str


@attrs.frozen(kw_only=True)
class Placed:
    """The call runs on ``host`` (``resumed``: from a checkpoint).

    ``seconds``: from the dispatcher taking the call (or losing its host) to the host
    accepting it, queueing included.
    """

    call_id: str
    host: str
    resumed: bool = False
    seconds: float = 0.0


@attrs.frozen(kw_only=True)
class Checkpointed:
    """The host took a checkpoint (after a turn, a tool call, or its answer)."""

    call_id: str
    host: str
    done: int
    open_calls: int


@attrs.frozen(kw_only=True)
class Refused:
    """The call was not placed: ``reason`` says why."""

    call_id: str
    reason: str


@attrs.frozen(kw_only=True)
class FailedOver:
    """``from_host`` died mid-call; the call resumes on ``to_host`` from its last checkpoint."""

    call_id: str
    from_host: str
    to_host: str


@attrs.frozen(kw_only=True)
class Finished:
    """The call ended normally."""

    outcome: CallOutcome


@attrs.frozen(kw_only=True)
class Failed:
    """The call ended with an error (``error`` is its text)."""

    call_id: str
    error: str


Event = Queued | Placed | Checkpointed | Refused | FailedOver | Finished | Failed
TERMINAL = (Refused, Finished, Failed)


class CallRefused(Exception):
    """``outcome()`` of a call the dispatcher refused (no capacity before the deadline, no host)."""


class CallFailed(Exception):
    """``outcome()`` of a call that failed (its agent raised, too many failovers, ...)."""


@attrs.frozen(kw_only=True)
class CallContext:
    """The placed call a tool runs for: dedupe on ``call_id`` (a tool may run twice on failover)."""

    call_id: str
    host: str
    attempt: int
    metadata: Mapping[str, str]


_CURRENT: contextvars.ContextVar[CallContext] = contextvars.ContextVar("engine_placed_call")


def current_call() -> CallContext:
    """The placed call the running tool or callback belongs to.

    Raises:
        LookupError: not inside a call a ``CallHost`` runs.
    """
    return _CURRENT.get()


__all__ = [
    "TERMINAL",
    "CallContext",
    "CallFailed",
    "CallOutcome",
    "CallRefused",
    "CallSpec",
    "Checkpoint",
    "Checkpointed",
    "Endpoint",
    "Event",
    "Failed",
    "FailedOver",
    "Finished",
    "Placed",
    "Queued",
    "Refused",
    "Say",
    "SimulatedCaller",
    "Speak",
    "Turn",
    "TurnFigures",
    "UnknownAgent",
    "current_call",
    "resolve_agent",
]
