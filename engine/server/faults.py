"""Fault injection for one connection: what the server does wrong, on purpose.

A :class:`Faults` value is handed to :class:`~engine.server.app.LocalServer`
(for every connection, the next one, or one by index). Counting is in server
events actually sent on the socket, ``session.created`` being number 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs


def _non_negative(_: Any, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


def _delays(value: Mapping[str, float] | None) -> dict[str, float]:
    delays = dict(value or {})
    for kind, seconds in delays.items():
        if seconds < 0:
            raise ValueError(f"delay for {kind!r} must be >= 0, got {seconds}")
    return delays


def _types(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


@attrs.frozen(kw_only=True)
class Faults:
    """Misbehaviour of one connection; everything is off by default.

    Attributes:
        drop_after: end the connection right after this many server events were sent.
        drop_at: end the connection instead of sending the first event of this type.
        close_code: how a drop ends the connection: ``None`` cuts the TCP
            connection without a close frame (the client sees 1006); a code
            (1001, 1011, 4000...) closes cleanly with it.
        close_reason: the reason sent with ``close_code``.
        delay: seconds to hold each event of a type before sending it (the
            socket is ordered, so later events wait behind it).
        duplicate: event types sent twice (same text, same ``event_id``).
        silent_after: after this many events were sent, go silent: send
            nothing more, answer no ping and no close frame (0: from the start).
            Client messages are still read off the socket and dropped.
    """

    drop_after: int | None = attrs.field(default=None, validator=_non_negative)
    drop_at: str | None = None
    close_code: int | None = None
    close_reason: str = ""
    delay: dict[str, float] = attrs.field(factory=dict, converter=_delays)
    duplicate: frozenset[str] = attrs.field(default=frozenset(), converter=_types)
    silent_after: int | None = attrs.field(default=None, validator=_non_negative)


NO_FAULTS = Faults()


@attrs.frozen(kw_only=True)
class Quirks:
    """Inworld behaviours that differ from GA, off by default (docs/protocol.md §12).

    Attributes:
        manual_vad_events: ``speech_started`` / ``speech_stopped`` fire in manual
            mode too (``turn_detection: null``), without committing anything
            (pipecat CHANGELOG 1.4.0).
        omit_call_name: ``response.function_call_arguments.done`` carries no
            ``name``; the name is only on the function_call item (§12).
    """

    manual_vad_events: bool = False
    omit_call_name: bool = False


def _entries(value: Iterable[Mapping[str, Any]]) -> tuple[Mapping[str, Any], ...]:
    entries = tuple(value)
    for entry in entries:
        if not any(key in entry for key in ("type", "await", "sleep")):
            raise ValueError(f"replay entry needs 'type', 'await' or 'sleep': {entry!r}")
    return entries


@attrs.frozen(kw_only=True)
class Replay:
    """Recorded server events to play to a connection instead of the assistant.

    ``events`` are raw server event dicts, sent verbatim in order. Two kinds of
    marker entries (dicts without ``type``) control the timing:
    ``{"await": "response.create"}`` waits until the client has sent an event
    of that type, and ``{"sleep": 0.25}`` pauses. After the last entry the
    connection stays open, reading and ignoring the client, until it closes.
    """

    events: tuple[Mapping[str, Any], ...] = attrs.field(converter=_entries)
