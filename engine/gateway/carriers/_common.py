"""What the carrier dialects share: the stream's state table, frame parsing, field checks.

Theory of operation: a carrier media stream has three states. It waits for
``start`` (``connected`` may come first), then streams (media, DTMF, mark
echoes) until ``stop``, then is over. :data:`TRANSITIONS` is the whole
machine: for each state, the events it accepts and the state they lead to. An
event that the table does not list for the current state (media before
``start``, anything after ``stop``, a second ``start``) is out of order: the
dialect reports it as :class:`~engine.gateway.carriers.base.Malformed` and the
state does not change. Unknown events are malformed in every state.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping
from typing import Any

from engine.gateway.carriers.base import Malformed

AWAITING_START = "awaiting_start"
STREAMING = "streaming"
STOPPED = "stopped"

TRANSITIONS: dict[str, dict[str, str]] = {
    AWAITING_START: {
        "connected": AWAITING_START, "start": STREAMING, "stop": STOPPED, "error": AWAITING_START,
    },
    STREAMING: {
        "media": STREAMING, "dtmf": STREAMING, "mark": STREAMING, "stop": STOPPED, "error": STREAMING,
    },
    STOPPED: {},
}  # fmt: skip
"""state -> {event accepted in it -> next state}; ``error`` is Telnyx's (Twilio sends none)."""

RAW_LIMIT = 200
"""Characters of a bad frame kept in :class:`Malformed` (enough to see what it was, never a whole payload)."""

DTMF_DIGITS = frozenset("0123456789*#ABCD")


class Bad(Exception):
    """A field check failed; the dialect turns it into :class:`Malformed`. Never leaves the package."""


def clip(text: str) -> str:
    """``text`` cut to :data:`RAW_LIMIT` characters."""
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT] + "..."


def parse(text: str) -> dict[str, Any] | Malformed:
    """A frame as a JSON object with a string ``event``, or the reason it is not one."""
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return Malformed(reason=f"not JSON: {exc}", raw=clip(text))
    if not isinstance(frame, dict):
        return Malformed(reason=f"not a JSON object but {type(frame).__name__}", raw=clip(text))
    if not isinstance(frame.get("event"), str):
        return Malformed(reason="no string 'event' field", raw=clip(text))
    return frame


def out_of_order(event: str, state: str, text: str) -> Malformed:
    """The Malformed for an event the state table refuses in ``state``."""
    if state == STOPPED:
        reason = f"'{event}' after stop"
    elif state == AWAITING_START:
        reason = f"'{event}' before start"
    else:
        reason = f"'{event}' while streaming (already started)"
    return Malformed(reason=reason, raw=clip(text))


def section(frame: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """The object under ``key``."""
    value = frame.get(key)
    if not isinstance(value, dict):
        raise Bad(f"'{key}' is not an object")
    return value


def text_field(obj: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    """A string field (``""`` when optional and absent)."""
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise Bad(f"'{where}.{key}' is not a non-empty string")
    return value


def number_field(obj: Mapping[str, Any], key: str, where: str) -> int | None:
    """A counter both carriers send as a decimal string ("1"), or an integer; None when absent."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdecimal() and len(value) <= 18:
        return int(value)
    raise Bad(f"'{where}.{key}' is not a non-negative integer")


def payload_field(obj: Mapping[str, Any], where: str) -> bytes:
    """The base64 audio of a media frame, strictly decoded."""
    payload = obj.get("payload")
    if not isinstance(payload, str):
        raise Bad(f"'{where}.payload' is not a string")
    try:
        return binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise Bad(f"'{where}.payload' is not base64: {exc}") from None


def digit_field(obj: Mapping[str, Any], where: str) -> str:
    """A DTMF digit: one of 0-9, *, #, A-D."""
    digit = obj.get("digit")
    if not isinstance(digit, str) or digit not in DTMF_DIGITS:
        raise Bad(f"'{where}.digit' is not a DTMF digit (0-9, *, #, A-D)")
    return digit


def parameters_field(obj: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    """Custom parameters: an object of strings (absent means none)."""
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise Bad(f"'{where}.{key}' is not an object of strings")
    return dict(value)


def json_string(value: str) -> str:
    """``value`` as a JSON string literal (for frames built by concatenation)."""
    return json.dumps(value, ensure_ascii=False)
