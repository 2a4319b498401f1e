"""The Agent: what a user's module declares for ``engine serve``, and one Session per call from it.

A module such as::

    agent = engine.Agent(config=engine.SessionConfig(instructions="..."), provider=engine.Inworld(key))

    @agent.tool
    async def get_weather(city: str) -> dict[str, object]: ...

    @agent.on(engine.events.AssistantTranscript)
    def show(event): ...

is served with ``engine serve mymodule:agent``. The decorators are the
Session's (``tool``, ``add_tool``, ``on``), recorded here and applied to a
fresh :class:`~engine.Session` for every call; ``@agent.on_call`` sees each
call's carrier ids and custom parameters first and may choose its config.
The Agent imports no web framework, so ``import engine`` stays cheap.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from engine.errors import UsageTypeError, UsageValueError
from engine.protocol.config import AudioFormat, SessionConfig
from engine.protocol.items import Item
from engine.providers import Provider
from engine.tools import Tool

if TYPE_CHECKING:
    from engine.actors.session import Session
    from engine.actors.settings import SessionSettings
    from engine.transports.base import Connector

E = TypeVar("E")
F = TypeVar("F", bound=Callable[..., Any])
CallHook = Callable[["Call"], "SessionConfig | Awaitable[SessionConfig | None] | None"]


@attrs.frozen(kw_only=True)
class Call:
    """One phone call as the gateway knows it when the carrier's stream starts.

    Attributes:
        id: the gateway's own id for the call (in logs and metrics).
        carrier: the dialect (``twilio``, ``telnyx``).
        call_id: the carrier's call id (Twilio's CallSid, Telnyx's call_control_id).
        stream_id: the carrier's stream id (Twilio's streamSid).
        account_id: the carrier account, when the carrier says.
        custom_parameters: what the answer passed through (Twilio ``<Parameter>``s).
        audio: the call's audio format; the session speaks it in and out, untranscoded.
    """

    id: str
    carrier: str
    call_id: str
    stream_id: str
    account_id: str | None = None
    custom_parameters: Mapping[str, str] = attrs.field(factory=dict)
    audio: AudioFormat = AudioFormat(type="audio/pcmu", rate=8000)


class Agent:
    """The user's agent: config, provider, tools and callbacks; a fresh Session per call.

    Args:
        config: the session configuration of every call (its audio formats are set
            to the call's, so a phone call runs in G.711 end to end).
        provider: ``engine.Inworld(...)`` / ``engine.OpenAI(...)``; ``engine serve --url``
            or the built-in local server supply one when this is ``None``.
        settings: runtime settings of each call's session.
        history: an initial conversation for every call.
        greet: ask for a response as soon as the call's session is ready (the bot speaks first).

    Raises:
        TypeError: ``config`` is not a ``SessionConfig`` (a ``UsageTypeError``).
    """

    def __init__(
        self,
        config: SessionConfig | None = None,
        provider: Provider | None = None,
        *,
        settings: SessionSettings | None = None,
        history: Iterable[Item | Mapping[str, Any]] = (),
        greet: bool = False,
    ) -> None:
        if config is not None and not isinstance(config, SessionConfig):
            raise UsageTypeError(f"config must be an engine.SessionConfig, got {type(config).__name__}")
        self.config = config or SessionConfig()
        self.provider = provider
        self.settings = settings
        self.history = tuple(history)
        self.greet = greet
        self._tools: dict[str, Tool] = {}
        self._callbacks: list[tuple[tuple[type, ...], Callable[..., Any]]] = []
        self._call_hooks: list[CallHook] = []

    def __repr__(self) -> str:
        provider = self.provider.name if self.provider is not None else "unset"
        return f"<Agent provider={provider} tools={sorted(self._tools)}>"

    # ------------------------------------------------------------------ registration (Session's API)

    def tool(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        timeout: float = 30.0,
        cancel_on_interrupt: bool = True,
    ) -> Any:
        """Register a function as a tool of every call; its schema comes from its signature and docstring."""

        def register(f: F) -> F:
            self.add_tool(
                Tool.from_function(f, name=name, timeout=timeout, cancel_on_interrupt=cancel_on_interrupt)
            )
            return f

        return register(fn) if fn is not None else register

    def add_tool(self, tool: Tool) -> None:
        """Register a tool with an explicit schema."""
        self._tools[tool.name] = tool

    @property
    def tools(self) -> tuple[Tool, ...]:
        """The registered tools."""
        return tuple(self._tools.values())

    def on(self, *types: type[E]) -> Callable[[F], F]:
        """Register a callback (sync or async) for these event types (all if none), on every call.

        Besides ``engine.events``, a call's callbacks get :class:`engine.gateway.events.Dtmf`.
        A callback taking two parameters, ``(event, session)``, also gets its call's
        :class:`~engine.Session`, to act on that call (``await session.send_text(...)``).

        Raises:
            TypeError: the callback does not take one or two positional parameters
                (a ``UsageTypeError``).
        """

        def register(callback: F) -> F:
            _callback_arity(callback)  # refuse a callback no event could call, at registration
            self._callbacks.append((types, callback))
            return callback

        return register

    def on_call(self, hook: CallHook) -> CallHook:
        """Register ``hook(call)`` (sync or async), run when a call starts, before its session.

        It may return a ``SessionConfig`` to use for this call instead of the agent's
        (e.g. chosen from ``call.custom_parameters``); ``None`` keeps the current one.
        Hooks run in registration order; an exception refuses the call.
        """
        self._call_hooks.append(hook)
        return hook

    # ------------------------------------------------------------------ per call

    async def config_for(self, call: Call) -> SessionConfig:
        """The configuration of ``call``: the agent's, as the hooks chose, in the call's audio format.

        Raises:
            TypeError: a hook returned something other than a ``SessionConfig`` or ``None``
                (a ``UsageTypeError``); what a hook raises propagates (it refuses the call).
        """
        config = self.config
        for hook in self._call_hooks:
            result = hook(call)
            if inspect.isawaitable(result):
                result = await result
            if result is not None:
                if not isinstance(result, SessionConfig):
                    raise UsageTypeError(
                        f"an on_call hook must return a SessionConfig or None, got {type(result).__name__}"
                    )
                config = result
        return attrs.evolve(config, input_format=call.audio, output_format=call.audio)

    def session(
        self,
        config: SessionConfig | None = None,
        *,
        provider: Provider | None = None,
        connector: Connector | None = None,
    ) -> Session:
        """A fresh Session with the agent's tools and callbacks (``config`` overrides the agent's).

        Raises:
            ValueError: no provider, here or on the agent (a ``UsageValueError``).
        """
        from engine.actors.session import Session

        chosen = provider or self.provider
        if chosen is None:
            raise UsageValueError("the agent has no provider: pass one to Agent(...) or to session()")
        session = Session(
            chosen,
            config or self.config,
            history=self.history,
            settings=self.settings,
            connector=connector,
        )
        for tool in self._tools.values():
            session.add_tool(tool)
        for types, callback in self._callbacks:
            session.on(*types)(_bound(callback, session) if _callback_arity(callback) == 2 else callback)
        return session


def _callback_arity(callback: Callable[..., Any]) -> int:
    """How many positional arguments ``callback`` takes: 1 (the event) or 2 (the event and the session)."""
    try:
        parameters = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return 1  # a builtin or C callable: called with the event, as Session.on does
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return 1
    required = [p for p in positional if p.default is p.empty]
    if 1 <= len(required) <= 2:
        return len(required)
    if not required and positional:
        return 1
    raise UsageTypeError(
        f"an agent callback takes (event) or (event, session); {getattr(callback, '__name__', callback)!r} "
        f"takes {len(required)} required positional parameters"
    )


def _bound(callback: Callable[..., Any], session: Session) -> Callable[[Any], Any]:
    """``callback`` with its call's session as the second argument, async if it is."""
    if inspect.iscoroutinefunction(callback):

        async def call_async(event: Any) -> Any:
            return await callback(event, session)

        return call_async

    def call(event: Any) -> Any:
        return callback(event, session)

    return call


__all__ = ["Agent", "Call"]
