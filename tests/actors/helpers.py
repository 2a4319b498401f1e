"""Shared helpers for the session tests: sessions pointed at a peer, event collection, wire sync."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, TypeVar

import engine
from engine.actors.dispatch import EventStream
from tests.actors.peer import Peer

E = TypeVar("E")

KEY = "secret-key"
SETTINGS = engine.SessionSettings(close_timeout=0.5)
"""Every test session: a short close bound keeps the suite fast when a callback is slow."""


def inworld(peer: Peer, key: str = KEY, **kwargs: Any) -> engine.Inworld:
    """An Inworld provider pointed at ``peer``."""
    return engine.Inworld(api_key=key, url=f"ws://127.0.0.1:{peer.port}/session", **kwargs)


def make_session(
    peer: Peer,
    config: engine.SessionConfig | None = None,
    *,
    provider: Any = None,
    settings: engine.SessionSettings = SETTINGS,
    **kwargs: Any,
) -> engine.Session:
    """A session on ``peer`` (Inworld, basic auth, ``instructions="be brief"`` unless told)."""
    return engine.Session(
        provider or inworld(peer),
        config or engine.SessionConfig(instructions="be brief"),
        settings=settings,
        **kwargs,
    )


async def collect_until(stream: EventStream, done: Callable[[Any], bool]) -> list[Any]:
    """Events from ``stream`` up to and including the first one ``done`` accepts."""
    seen: list[Any] = []
    async for event in stream:
        seen.append(event)
        if done(event):
            return seen
    raise AssertionError(f"the event stream ended before the awaited event; saw {seen!r}")


async def next_event(stream: EventStream, kind: type[E], where: Callable[[E], bool] = lambda _: True) -> E:
    """The next event of ``kind`` (matching ``where``) from ``stream``."""
    seen = await collect_until(stream, lambda e: isinstance(e, kind) and where(e))
    event: E = seen[-1]
    return event


def of_type(events: list[Any], kind: type[E]) -> list[E]:
    """The events of ``kind``, in order."""
    return [e for e in events if isinstance(e, kind)]


async def round_trip(session: engine.Session, peer: Peer) -> None:
    """Return once everything the client queued so far has reached the peer.

    The outbox keeps the order of client events, so once a marker message sent
    now has arrived, so has everything before it.
    """
    count = len(peer.of_type("input_audio_buffer.clear"))
    await session.clear_audio()
    await peer.wait_for("input_audio_buffer.clear", count + 1)


def decoded_appends(peer: Peer) -> list[bytes]:
    """The audio of every ``input_audio_buffer.append`` the peer received, decoded."""
    return [base64.b64decode(m["audio"]) for m in peer.of_type("input_audio_buffer.append")]


def after(peer: Peer, kind: str) -> list[str]:
    """Types of the client messages received after the first one of ``kind``."""
    types = peer.sent_types()
    return types[types.index(kind) + 1 :]
