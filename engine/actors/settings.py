"""Runtime settings of a session: deadlines, queue bounds and their overflow policies."""

from __future__ import annotations

from typing import Any

import attrs

from engine.core.policy import CallPolicy
from engine.core.reconnect import ReconnectPolicy
from engine.protocol.text import DEFAULT_MAX_CONFIG_BYTES, DEFAULT_MAX_ITEM_BYTES
from engine.transports.base import TransportSettings


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


def _positive_or_none(_: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None:
        _positive(_, attribute, value)


@attrs.frozen(kw_only=True)
class SessionSettings:
    """How a session behaves at runtime (the wire configuration is ``SessionConfig``).

    Attributes:
        transport: socket settings (message size, timeouts, keep-alive, ``ws://`` policy).
        ready_timeout: seconds ``connect()`` waits for the session to become ready.
        close_timeout: seconds ``close()`` may take in all, even if the server never answers.
        response_timeout: seconds to wait for ``response.created`` after ``response.create``.
        stall_timeout: seconds a response may send nothing before it is cancelled and
            reported (``Error(code="response_stalled")``); ``None`` waits forever.
        cancel_timeout: seconds to wait for ``response.done`` after a cancel before the
            slot is freed as if it had come (``Error(code="cancel_timeout")``).
        event_buffer: events queued per callback or stream before new ones are dropped (reported).
        slow_callback_threshold: seconds one call of a sync callback (called inline, on the event
            loop) may take; a callback that takes longer is reported (``Error`` ``slow_callback``)
            and from then on called in a worker thread, so it cannot stall the session.
        outbox_size: encoded messages queued for the socket writer before producers wait.
        audio_chunk_ms: size of each ``input_audio_buffer.append`` (60 ms, as Inworld's client).
        hold_limit_ms: caller audio held before the session is ready (or while reconnecting).
        hold_policy: ``drop_oldest`` or ``drop_newest`` once ``hold_limit_ms`` is exceeded.
        reconnect: backoff and attempt limit after a dropped socket.
        max_session_duration: seconds after which the session is rolled over to a new
            socket between turns (providers end sessions after a time); ``None`` never.
        call_policy: what ends a call by itself (idle reprompts and goodbye, ``end_call``,
            a maximum length with a warning, a cost budget that ends or rolls over the call):
            :class:`~engine.core.policy.CallPolicy`; ``None``: nothing.
        max_history_items: conversation items kept in the local mirror (``session.history``,
            replayed on a reconnect); the oldest are forgotten past it, so memory stays flat.
        raw_events: deliver a ``RawEvent`` for each server event the library does not model
            (also turned on by any ``events(RawEvent)`` or ``on(RawEvent)``).
        max_item_bytes: the largest conversation item the session sends (UTF-8 bytes of its
            JSON text; 256 KiB): a bigger tool output is answered with an error output and
            reported (``tool_output_too_large``), a bigger ``send_text`` or history entry is a
            ``ValueError`` at the call. An item the server refuses would otherwise be replayed,
            and refused again, by every restore.
        max_config_bytes: the largest ``session.update`` the session sends (its configuration
            with the tools, as compact JSON; 512 KiB): a bigger one is a ``ValueError`` at
            ``Session(...)``, ``connect()`` or ``update()``, before anything is sent.
    """

    transport: TransportSettings = TransportSettings()
    ready_timeout: float = attrs.field(default=15.0, validator=_positive)
    close_timeout: float = attrs.field(default=3.0, validator=_positive)
    response_timeout: float = attrs.field(default=10.0, validator=_positive)
    stall_timeout: float | None = attrs.field(default=30.0, validator=_positive_or_none)
    cancel_timeout: float = attrs.field(default=5.0, validator=_positive)
    event_buffer: int = attrs.field(default=1000, validator=_positive)
    slow_callback_threshold: float = attrs.field(default=0.1, validator=_positive)
    outbox_size: int = attrs.field(default=64, validator=_positive)
    audio_chunk_ms: int = attrs.field(default=60, validator=_positive)
    hold_limit_ms: int = attrs.field(default=10_000, validator=_positive)
    hold_policy: str = attrs.field(default="drop_oldest")
    reconnect: ReconnectPolicy = ReconnectPolicy()
    max_session_duration: float | None = None
    call_policy: CallPolicy | None = None
    max_history_items: int | None = 500
    max_item_bytes: int = attrs.field(default=DEFAULT_MAX_ITEM_BYTES, validator=_positive)
    max_config_bytes: int = attrs.field(default=DEFAULT_MAX_CONFIG_BYTES, validator=_positive)
    raw_events: bool = False

    @hold_policy.validator
    def _check_policy(self, _: Any, value: str) -> None:
        if value not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"hold_policy must be 'drop_oldest' or 'drop_newest', got {value!r}")
