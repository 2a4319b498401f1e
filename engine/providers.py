"""Providers: where to connect, how to authenticate, and what the server does by itself.

A provider turns an API key into a URL and headers for one connection, fills
in its defaults for unset configuration, and states the facts the core needs
(:class:`~engine.core.conversation.CoreOptions`). The key is checked for what
an HTTP header can carry and wrapped in :class:`Secret`, whose ``repr`` and
``str`` never show it and which :mod:`engine.redaction` hides wherever a peer
could echo it.

The key may also be a callable (sync or async) returning it: :func:`dial`
calls it for every connection, so a reconnect gets a fresh short-lived token
(:mod:`engine.credentials` mints them); every value it returns is checked and
wrapped in a :class:`Secret` like a static key.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

import attrs

from engine.profiles import INWORLD, OPENAI, Profile
from engine.protocol import ConfigError
from engine.protocol.config import SessionConfig, Transcription
from engine.redaction import Secret, install_log_redaction, keep_secret, redact, transient_secret

if TYPE_CHECKING:
    from engine.core.conversation import CoreOptions

__all__ = [
    "INWORLD_URL",
    "OPENAI_URL",
    "Inworld",
    "KeySource",
    "OpenAI",
    "Provider",
    "Secret",
    "dial",
    "endpoint_url",
]

INWORLD_URL = "wss://api.inworld.ai/api/v1/realtime/session"
OPENAI_URL = "wss://api.openai.com/v1/realtime"


KeyFunction: TypeAlias = Callable[[], "str | Secret | Awaitable[str | Secret]"]
"""A callable returning the key (or an awaitable of it): called on every dial."""

KeySource: TypeAlias = "str | Secret | KeyFunction"
"""What ``api_key`` accepts: a key, or a callable returning one."""

_NO_KEY = Secret("engine-placeholder-credential")
"""Stands in for a callable's key where only the URL is wanted (it is never sent)."""


def _api_key(value: KeySource) -> Secret | KeyFunction:
    """A static key as a checked :class:`Secret`; a callable as it is (checked on every dial)."""
    if callable(value) and not isinstance(value, Secret):
        return value
    return _checked_key(value)


def _checked_key(value: str | Secret) -> Secret:
    """The key as a :class:`Secret`, refused if it cannot go in an HTTP header as it is.

    A CR or LF could inject a header, and control or non-ASCII characters are
    refused by (and then logged by) the WebSocket libraries; the message says
    which character is wrong and where, never the key.
    """
    if not isinstance(value, str | Secret):
        raise ConfigError("api_key", f"expected a string, got {type(value).__name__} (key not shown)")
    secret = Secret(value)
    for position, char in enumerate(secret.reveal(), start=1):
        if not "!" <= char <= "~":
            if char in "\r\n":
                kind = "a line break (CR or LF), which could inject a header"
            elif char.isspace():
                kind = "whitespace"
            elif not char.isascii():
                kind = "a non-ASCII character"
            else:
                kind = "a control character"
            raise ConfigError(
                "api_key", f"character {position} is {kind}; a key must be printable ASCII (key not shown)"
            )
    install_log_redaction()
    return secret


async def resolve_key(source: Secret | KeyFunction) -> Secret:
    """The key to dial with now: a static one, or what the callable returns (awaited if need be).

    Every value is checked and kept for redaction even after the provider lets
    it go (a server may echo a rotated key later). What the callable raises is
    re-raised as a :class:`~engine.errors.TransportError` (redacted), so a minting
    backend that is down counts as a failed attempt under the reconnect policy.
    """
    if isinstance(source, Secret):
        return source
    from engine.errors import TransportError

    try:
        value = source()
        if inspect.isawaitable(value):
            value = await value
    except Exception as exc:
        raise TransportError(f"the api_key callable failed: {redact(repr(exc))}") from None
    secret = _checked_key(value)
    keep_secret(secret)
    return secret


async def dial(provider: Provider) -> tuple[str, dict[str, str]]:
    """URL and headers for one new connection, calling the provider's key callable if it has one."""
    source = getattr(provider, "api_key", None)
    if callable(source) and not isinstance(source, Secret):
        return provider.endpoint(await resolve_key(source))
    return provider.endpoint()


def endpoint_url(provider: Provider) -> str:
    """The URL a connection would go to, without calling a key callable (for recordings)."""
    source = getattr(provider, "api_key", None)
    key = _NO_KEY if callable(source) and not isinstance(source, Secret) else None
    return provider.endpoint(key)[0]


def _static(source: Secret | KeyFunction, key: Secret | None) -> Secret:
    if key is not None:
        return key
    if isinstance(source, Secret):
        return source
    raise ConfigError("api_key", "the key is a callable: connect with `await dial(provider)`")


def _join(url: str, query: dict[str, str]) -> str:
    """``url`` with ``query`` set: a parameter the URL already has (a copied ``?key=...&protocol=``) is
    replaced, never sent twice; the URL's other parameters are kept in their order."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit  # only when dialling

    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in query]
    return urlunsplit(parts._replace(query=urlencode([*kept, *query.items()])))


class Provider(Protocol):
    """What the session needs from a provider."""

    @property
    def name(self) -> str:
        """Short provider name."""
        ...

    @property
    def profile(self) -> Profile:
        """What the provider can do."""
        ...

    def endpoint(self, key: Secret | None = None) -> tuple[str, dict[str, str]]:
        """URL (with query) and headers for one new connection.

        ``key`` is the credential :func:`dial` resolved from a key callable;
        ``None`` uses the provider's static key.
        """
        ...

    def prepare(self, config: SessionConfig) -> SessionConfig:
        """The configuration to send: defaults filled in, unsupported fields refused.

        Raises:
            ConfigError: a field the service does not take.
        """
        ...

    def core_options(self) -> CoreOptions:
        """Protocol facts for the core."""
        ...


@attrs.frozen(kw_only=True)
class Inworld:
    """Inworld Realtime.

    Args:
        api_key: the portal key (already Base64) for ``auth="basic"``, or a JWT for ``"bearer"``;
            or a callable (sync or async) returning one, called on every dial.
        url: the endpoint; point it at a local server for tests.
        auth: ``"basic"`` (server side) or ``"bearer"`` (a JWT minted by your backend).
        sdk_name: reported in ``providerData.metadata.sdk``.

    Raises:
        ConfigError: ``api_key`` cannot go in an HTTP header (the key is never shown), or
            ``auth`` is neither ``"basic"`` nor ``"bearer"``.
    """

    api_key: Secret | KeyFunction = attrs.field(converter=_api_key)
    url: str = INWORLD_URL
    auth: Literal["basic", "bearer"] = attrs.field(default="basic")
    sdk_name: str = "engine"
    name: str = attrs.field(default="inworld", init=False)
    profile: Profile = INWORLD

    @auth.validator
    def _check_auth(self, _: Any, value: str) -> None:
        if value.capitalize() not in self.profile.auth_schemes:
            raise ConfigError("auth", f"must be 'basic' or 'bearer', got {value!r}")

    def endpoint(self, key: Secret | None = None) -> tuple[str, dict[str, str]]:
        """A fresh session key on every connect, as the service expects (docs/protocol.md §1.1)."""
        query = {"key": transient_secret(f"engine-realtime-{uuid.uuid4().hex}"), "protocol": "realtime"}
        credential = _static(self.api_key, key).reveal()
        return _join(self.url, query), {"Authorization": f"{self.auth.capitalize()} {credential}"}

    def prepare(self, config: SessionConfig) -> SessionConfig:
        """Inworld's defaults (docs/protocol.md §4.3) for unset fields; the client answers tools.

        Raises:
            ConfigError: a field Inworld does not take (refused locally, nothing is sent).
        """
        self.profile.check(config)
        provider_data: dict[str, Any] = {
            "metadata": {"sdk": self.sdk_name},
            "auto_tool_response": False,
            **(config.provider_data or {}),
        }
        return attrs.evolve(
            config,
            model=config.model or "openai/gpt-4.1-mini",
            voice=config.voice or "Clive",
            tts_model=config.tts_model or "inworld-tts-2",
            transcription=config.transcription or Transcription(model="inworld/inworld-stt-1"),
            provider_data=provider_data,
        )

    def core_options(self) -> CoreOptions:
        """From the profile: voice changes allowed, truncation, we answer tools ourselves."""
        return self.profile.core_options()


@attrs.frozen(kw_only=True)
class OpenAI:
    """OpenAI Realtime (GA).

    Args:
        api_key: the API key (sent as ``Authorization: Bearer``), or a callable (sync or
            async) returning one (a client secret), called on every dial.
        model: the realtime model, fixed for the session by the URL.
        url: the endpoint; point it at a local server for tests.

    Raises:
        ConfigError: ``api_key`` cannot go in an HTTP header (the key is never shown).
    """

    api_key: Secret | KeyFunction = attrs.field(converter=_api_key)
    model: str = "gpt-realtime-2.1"
    url: str = OPENAI_URL
    name: str = attrs.field(default="openai", init=False)
    profile: Profile = OPENAI

    def endpoint(self, key: Secret | None = None) -> tuple[str, dict[str, str]]:
        """The model goes in the query (docs/protocol.md §1.2)."""
        scheme = self.profile.auth_schemes[0]
        credential = _static(self.api_key, key).reveal()
        return _join(self.url, {"model": self.model}), {"Authorization": f"{scheme} {credential}"}

    def prepare(self, config: SessionConfig) -> SessionConfig:
        """Refuse what GA cannot do; drop Inworld-only extensions.

        Raises:
            ConfigError: a field GA does not take (refused locally, nothing is sent).
        """
        self.profile.check(config)
        return self.profile.without_extensions(config)

    def core_options(self) -> CoreOptions:
        """From the profile: GA refuses a voice change once audio exists."""
        return self.profile.core_options()
