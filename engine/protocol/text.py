"""Text that must cross the wire: checks and repairs for what UTF-8 cannot carry, and size limits.

A Python ``str`` may hold unpaired UTF-16 halves (``"\\ud83d"``): JSON allows
them as escapes and ``json.loads`` turns them into such strings, but UTF-8 has
no encoding for them, so a message holding one cannot be sent. Each edge deals
with them once: text from the application is refused at the call
(:func:`check_text`), text from the server or a tool is repaired
(:func:`repair_text`, U+FFFD in place of each lone half) and reported, and
:func:`engine.protocol.codec.encode` repairs whatever still gets through, so a
bad character is never a socket failure.

Size: an item is replayed on every restore, so an item the server refuses
(WebSocket close 1009, "message too big") would be refused again after every
reconnect. :func:`check_item_size` refuses it before it enters the history.
"""

from __future__ import annotations

import json
import re
from typing import Any

from engine.errors import UsageValueError
from engine.protocol._wire import to_wire

_SURROGATE = re.compile("[\ud800-\udfff]")

DEFAULT_MAX_ITEM_BYTES = 256 * 1024
"""The default cap on one ``conversation.item.create`` (UTF-8 bytes of its JSON).

Neither provider documents a per-message limit for items; common WebSocket
servers refuse messages over 1 MiB by default (wsproto, trio-websocket), and
OpenAI caps one audio append at 15 MiB. 256 KiB is far above any spoken or
tool-result text a model can use, and far below those limits.
"""


def check_text(text: str, what: str = "text") -> None:
    """Raise ``ValueError`` (a ``UsageValueError``) if ``text`` cannot be sent as UTF-8 (a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        at = exc.start
        raise UsageValueError(
            f"{what} holds a lone surrogate {text[at]!r} at index {at}, which UTF-8 cannot encode"
        ) from None


def repair_text(text: str) -> str:
    """``text`` with every surrogate that is not half of a pair replaced by U+FFFD.

    A pair written as two code points (``"\\ud83d\\ude00"``) becomes the one
    character it stands for.
    """
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def has_surrogates(text: str) -> bool:
    """True when ``text`` holds a surrogate code point (so UTF-8 cannot encode it)."""
    return _SURROGATE.search(text) is not None


def repair_data(value: Any) -> tuple[Any, int]:
    """A decoded JSON value with its strings (and keys) repaired, and how many were changed."""
    if isinstance(value, str):
        fixed = repair_text(value)
        return fixed, int(fixed is not value)
    if isinstance(value, list):
        out, changed = [], 0
        for element in value:
            fixed, n = repair_data(element)
            out.append(fixed)
            changed += n
        return (out, changed) if changed else (value, 0)
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        changed = 0
        for key, element in value.items():
            fixed_key = repair_text(key)
            fixed, n = repair_data(element)
            result[fixed_key] = fixed
            changed += n + int(fixed_key is not key)
        return (result, changed) if changed else (value, 0)
    return value, 0


def depth_exceeds(value: Any, limit: int) -> bool:
    """True when ``value`` nests lists and objects more than ``limit`` deep (no recursion used)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict):
            current = list(current.values())
        elif not isinstance(current, list):
            continue
        if depth >= limit:
            return True
        stack.extend((element, depth + 1) for element in current if isinstance(element, list | dict))
    return False


def json_size(value: Any) -> int:
    """UTF-8 bytes of ``value`` as compact JSON (what the wire carries)."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace"))


def check_item(item: Any, limit: int, what: str = "item") -> None:
    """Raise ``ValueError`` if ``item`` (an attrs item) cannot be sent: text UTF-8 cannot carry, or too big.

    The size is that of the item's compact JSON in UTF-8 (``limit`` bytes at most),
    measured before the item enters the history, so it is never sent, refused,
    and replayed by a restore.
    """
    text = json.dumps(to_wire(item), ensure_ascii=False, separators=(",", ":"))
    if has_surrogates(text):
        found = _SURROGATE.search(text)
        raise UsageValueError(
            f"{what} holds a lone surrogate {found.group() if found else ''!r} (an unpaired UTF-16 half), "
            "which UTF-8 cannot encode"
        )
    size = len(text.encode("utf-8"))
    if size > limit:
        raise UsageValueError(
            f"{what} is {size} bytes as a conversation item, more than the {limit} the session "
            "sends (SessionSettings.max_item_bytes)"
        )


DEFAULT_MAX_CONFIG_BYTES = 512 * 1024
"""The largest ``session.update`` the session sends (its ``session`` object as compact JSON, UTF-8)."""


def check_config(config: Any, limit: int, what: str = "the configuration") -> None:
    """Raise ``ValueError`` if ``config`` (a SessionConfig, tools included) is too big to send.

    A ``session.update`` the server refuses for its size would close the socket,
    and every restore would send it again: so it is refused before it is sent.
    """
    size = json_size(config.to_wire())
    if size > limit:
        raise UsageValueError(
            f"{what} is {size} bytes as a session.update, more than the {limit} the session "
            "sends (SessionSettings.max_config_bytes): shorten the instructions or the tools"
        )

