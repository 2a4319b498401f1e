"""Per-turn latency: every timestamp of a turn on one monotonic clock (the core's).

A turn runs from the end of the user's input (server VAD's ``speech_stopped``,
or the client's ``response.create``) to the ``response.done`` that hands the
floor back (after any tool round trips). Timestamps that did not happen stay
``None``; nothing is ever a sentinel number (docs/peers.md §2.5).
"""

from __future__ import annotations

from typing import Any

import attrs

from engine.protocol.items import Usage


@attrs.frozen(kw_only=True)
class TurnMetrics:
    """Timestamps (seconds on the session's monotonic clock) and totals of one turn."""

    turn: int
    response_id: str | None = None
    user_speech_ended: float | None = None
    response_requested: float | None = None
    response_created: float | None = None
    first_audio_received: float | None = None
    """The first audio of the answer: a preamble's (``Item.is_preamble``) is not counted here."""
    first_audio_played: float | None = None
    response_done: float | None = None
    tool_seconds: float | None = None
    reconnect_seconds: float | None = None
    usage: Usage | None = None
    cost: float | None = None
    """What the turn's ``usage`` cost by the provider profile's :class:`Prices` (``None``: no table)."""
    preamble_audio_received: float | None = None
    """The first audio of a preamble spoken before the answer (``None``: no preamble)."""

    @property
    def turn_start(self) -> float | None:
        """When the user's input ended: speech end, else the client's request."""
        return self.user_speech_ended if self.user_speech_ended is not None else self.response_requested

    @property
    def time_to_first_audio(self) -> float | None:
        """Seconds from the end of the user's input to the first audio delta."""
        return _span(self.turn_start, self.first_audio_received)

    @property
    def time_to_first_played(self) -> float | None:
        """Seconds from the end of the user's input to the first played audio (needs acknowledgements)."""
        return _span(self.turn_start, self.first_audio_played)

    @property
    def total_seconds(self) -> float | None:
        """Seconds from the end of the user's input to the last ``response.done``."""
        return _span(self.turn_start, self.response_done)


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else end - start


@attrs.frozen(kw_only=True)
class Prices:
    """Prices per million tokens, by direction and modality (a provider profile's table).

    Tokens a provider does not break down by modality are priced as text;
    cached input tokens at the ``cached_*`` price of their modality.
    """

    currency: str = "USD"
    input_text: float = 0.0
    input_audio: float = 0.0
    input_image: float = 0.0
    cached_text: float = 0.0
    cached_audio: float = 0.0
    cached_image: float = 0.0
    output_text: float = 0.0
    output_audio: float = 0.0

    def cost(self, usage: Usage | None) -> float | None:
        """What ``usage`` costs, in ``currency``; ``None`` without usage."""
        if usage is None:
            return None
        counts = token_counts(usage)
        return sum(getattr(self, key, 0.0) * n for key, n in counts.items()) / 1_000_000


MODALITIES = ("text", "audio", "image")


def token_counts(usage: Usage) -> dict[str, int]:
    """Tokens by ``{input,cached,output}_{modality}`` (an undetailed remainder counts as text)."""
    counts: dict[str, int] = {}
    for direction, total, details in (
        ("input", usage.input_tokens, usage.input_token_details),
        ("output", usage.output_tokens, usage.output_token_details),
    ):
        details = details or {}
        detailed = 0
        for modality in MODALITIES:
            n = _int(details.get(f"{modality}_tokens"))
            detailed += n
            counts[f"{direction}_{modality}"] = n
        counts[f"{direction}_text"] += max(_int(total) - detailed, 0)
    details = usage.input_token_details or {}
    cached = details.get("cached_tokens_details")
    if isinstance(cached, dict):
        for modality in MODALITIES:
            hit = min(_int(cached.get(f"{modality}_tokens")), counts[f"input_{modality}"])
            counts[f"input_{modality}"] -= hit
            counts[f"cached_{modality}"] = hit
    else:  # cached tokens without a breakdown: priced as cached text
        hit = min(_int(details.get("cached_tokens")), counts["input_text"])
        counts["input_text"] -= hit
        counts["cached_text"] = hit
    return {key: n for key, n in counts.items() if n}


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class TurnClock:
    """Collects a turn's timestamps as the core sees them; ``finish`` returns the record."""

    def __init__(self, prices: Prices | None = None) -> None:
        self._prices = prices
        self._count = 0
        self._reset()

    def _reset(self) -> None:
        self._fields: dict[str, object] = {}
        self._usage: Usage | None = None
        self._tool_start: float | None = None
        self._tool_seconds = 0.0
        self._tools_open = 0
        self._lost_at: float | None = None
        self._reconnect_seconds = 0.0

    def mark(self, name: str, now: float) -> None:
        """Record ``name`` at ``now`` (only its first occurrence in the turn)."""
        if name not in self._fields:
            self._fields[name] = now

    def get(self, name: str) -> float | None:
        """The time recorded for ``name`` in this turn, if any."""
        return _f(self._fields.get(name))

    def add_usage(self, usage: Usage | None) -> None:
        """Add one response's token usage to the turn's."""
        if usage is not None:
            self._usage = usage if self._usage is None else _sum_usage(self._usage, usage)

    def tool_started(self, now: float) -> None:
        """A tool call started; tool time is the span while any call runs."""
        self._fields.setdefault("tool", None)
        if self._tools_open == 0:
            self._tool_start = now
        self._tools_open += 1

    def tool_finished(self, now: float) -> None:
        """A tool call was answered."""
        if self._tools_open == 0:
            return
        self._tools_open -= 1
        if self._tools_open == 0 and self._tool_start is not None:
            self._tool_seconds += now - self._tool_start
            self._tool_start = None

    def connection_lost(self, now: float) -> None:
        """The socket dropped; downtime runs until ``connection_restored``."""
        self._fields.setdefault("reconnect", None)
        if self._lost_at is None:
            self._lost_at = now

    def connection_restored(self, now: float) -> None:
        """The session is ready again."""
        if self._lost_at is not None:
            self._reconnect_seconds += now - self._lost_at
            self._lost_at = None

    def finish(self, response_id: str | None, now: float) -> dict[str, Any]:
        """Close the turn at ``response.done``: the fields of its ``TurnMetrics``; start afresh."""
        self._count += 1
        fields = self._fields
        record: dict[str, Any] = {
            "turn": self._count,
            "response_id": response_id,
            "user_speech_ended": _f(fields.get("user_speech_ended")),
            "response_requested": _f(fields.get("response_requested")),
            "response_created": _f(fields.get("response_created")),
            "first_audio_received": _f(fields.get("first_audio_received")),
            "first_audio_played": _f(fields.get("first_audio_played")),
            "response_done": now,
            "tool_seconds": self._tool_seconds if "tool" in fields else None,
            "reconnect_seconds": self._reconnect_seconds if "reconnect" in fields else None,
            "usage": self._usage,
            "cost": self._prices.cost(self._usage) if self._prices is not None else None,
            "preamble_audio_received": _f(fields.get("preamble_audio_received")),
        }
        self._reset()
        return record


def _sum_usage(a: Usage, b: Usage) -> Usage:
    def add(x: int | None, y: int | None) -> int | None:
        return None if x is None and y is None else (x or 0) + (y or 0)

    return Usage(
        total_tokens=add(a.total_tokens, b.total_tokens),
        input_tokens=add(a.input_tokens, b.input_tokens),
        output_tokens=add(a.output_tokens, b.output_tokens),
        input_token_details=_sum_details(a.input_token_details, b.input_token_details),
        output_token_details=_sum_details(a.output_token_details, b.output_token_details),
    )


def _sum_details(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """Two token-detail dicts added key by key (nested dicts too; anything else kept from ``b``)."""
    if a is None or b is None:
        return a if b is None else b
    out = dict(a)
    for key, value in b.items():
        mine = out.get(key)
        if isinstance(value, dict) and isinstance(mine, dict):
            out[key] = _sum_details(mine, value)
        elif _int(value) or _int(mine):
            out[key] = _int(mine) + _int(value)
        else:
            out[key] = value
    return out


def _f(value: object) -> float | None:
    return value if isinstance(value, float | int) else None
