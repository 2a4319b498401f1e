"""Keep-alive, the message size limit, invalid audio, refused reconnects, closing while reconnecting.

The scenarios are in ``scenarios.py`` (the secret test runs them too); here
are their checks:

* A server that goes silent (no events, no pongs, no close frame) is found by
  the client's keep-alive (``keepalive_interval=0.1``, ``keepalive_timeout=0.2``):
  the session reconnects (``Reconnecting`` then ``Reconnected``) and the turn
  asked during the silence is restored and answered on the new socket.
* A message over ``max_message_size`` (4096 bytes; a 10 KB transcript delta
  replayed by the server) closes the socket with 1009; the session
  reconnects, with no fatal error, and a turn completes.
* An audio delta that is not base64 is a non-fatal ``Error`` with source
  ``protocol``; the same socket goes on and a turn completes.
* Refused reconnects: 503 twice then success reconnects and answers; 503
  twice then 401 gives up at once with a fatal ``connection_failed``.
* ``close()`` while reconnecting to a server that refuses every handshake
  returns within ``close_timeout``, whether the session is between attempts
  (long backoff) or attempting all the time (short backoff).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

import engine
from engine import events as ev
from tests.reliability import scenarios
from tests.reliability.support import TEXT_ANSWER, TEXT_QUESTION

pytestmark = pytest.mark.anyio


def kinds(events: list[Any], *wanted: type) -> list[type]:
    """The types of the events of the wanted kinds, in order."""
    return [type(e) for e in events if isinstance(e, wanted)]


def dialogue(items: list[engine.Item]) -> list[tuple[str | None, str]]:
    """User and assistant messages as (role, text)."""
    return [(i.role, i.text) for i in items if i.role in ("user", "assistant")]


async def test_a_silent_server_is_found_by_keep_alive_and_the_turn_completes() -> None:
    outcome = await scenarios.silent_server()
    connections = outcome.server.connections
    assert connections[0].silent
    assert len(connections) == 2
    assert kinds(outcome.observer.events, ev.Reconnecting, ev.Reconnected) == [
        ev.Reconnecting,
        ev.Reconnected,
    ]
    assert not [e for e in outcome.observer.errors if e.fatal]
    # The question asked into the silence was restored on the new socket and answered there.
    assert dialogue(connections[1].conversation.items) == [
        ("user", TEXT_QUESTION),
        ("assistant", TEXT_ANSWER),
    ]


async def test_a_message_over_max_message_size_closes_1009_and_reconnects(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="engine.actors.session")
    outcome = await scenarios.oversized_message()
    assert outcome.facts["state"] is engine.State.SESSION_READY
    assert len(outcome.server.connections) == 2
    assert kinds(outcome.observer.events, ev.Reconnecting, ev.Reconnected) == [
        ev.Reconnecting,
        ev.Reconnected,
    ]
    assert not [e for e in outcome.observer.errors if e.fatal]
    assert not any("word word" in item.text for item in outcome.session.history), "the big delta was used"
    lost = [r.getMessage() for r in caplog.records if r.getMessage().startswith("socket lost")]
    assert lost and "1009" in lost[0], lost


async def test_invalid_base64_audio_is_a_protocol_error_and_the_session_goes_on() -> None:
    outcome = await scenarios.invalid_audio()
    assert outcome.facts["state"] is engine.State.SESSION_READY
    assert len(outcome.server.connections) == 1
    [error] = outcome.observer.errors
    assert (error.code, error.source, error.fatal) == ("invalid_audio", "protocol", False)
    assert "item_bad" in error.message
    assert not outcome.observer.of(ev.AudioOut)
    assert not outcome.observer.of(ev.Reconnecting)


async def test_refused_reconnects_are_retried_then_the_turn_completes() -> None:
    outcome = await scenarios.refused_reconnect(final_status=None)
    assert outcome.raised is None
    assert outcome.server.refused == 2
    assert [e.attempt for e in outcome.observer.of(ev.Reconnecting)] == [1, 2, 3]
    assert [e.attempt for e in outcome.observer.of(ev.Reconnected)] == [3]
    assert not [e for e in outcome.observer.errors if e.fatal]


async def test_a_401_while_reconnecting_is_fatal_at_once() -> None:
    outcome = await scenarios.refused_reconnect(final_status=401)
    assert isinstance(outcome.raised, engine.SessionClosed), repr(outcome.raised)
    assert outcome.server.refused == 3
    assert len(outcome.observer.of(ev.Reconnecting)) == 3  # no attempt after the 401
    [closed] = outcome.observer.of(ev.Closed)
    assert closed.error is not None and closed.error.fatal
    assert closed.error.code == "connection_failed" and "401" in closed.error.message


@pytest.mark.parametrize("backoff", [0.01, 30.0], ids=["attempting", "between-attempts"])
async def test_close_while_reconnecting_to_a_refusing_server_is_bounded(backoff: float) -> None:
    outcome = await scenarios.close_while_reconnecting(backoff=backoff, close_timeout=0.5)
    facts = outcome.facts
    assert facts["state"] is engine.State.RECONNECTING
    assert facts["closed_state"] is engine.State.CLOSED
    assert facts["elapsed"] <= 0.5, f"close() took {facts['elapsed']:.3f}s"
    assert outcome.server.refused >= facts["attempts"] - 1
    [closed] = outcome.observer.of(ev.Closed)
    assert closed.error is None
    assert not outcome.observer.of(ev.Reconnected)
