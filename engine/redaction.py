"""Secrets, and keeping them out of everything a peer could make us print.

A key reaches the server in a header (``Basic``/``Bearer``) and, for Inworld,
a fresh session key in the query. A hostile or careless server can echo any of
it back: in an HTTP error body, a close reason, an ``error`` event's message or
a response header that a WebSocket library logs. So the library does not only
hide the key where it writes it: every :class:`Secret` registers itself here,
and :func:`redact` replaces every known secret (and the forms it is sent in)
in exception messages, close reasons, ``Error`` events and, through
:class:`RedactingFilter`, in every log record of the library and of the
WebSocket libraries it uses.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import logging
import traceback
import weakref
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "***"
"""What a secret is replaced with."""

LOGGER_PREFIXES = ("engine", "websockets", "trio-websocket", "trio_websocket", "wsproto", "h11")
"""Loggers (and their children) whose records are redacted."""

_MIN_FORM = 8
"""Shorter derived forms are not redacted (they would match ordinary text)."""

_TRANSIENT_KEPT = 256
"""Session keys remembered for redaction (one per connect; the oldest are forgotten)."""


class Secret:
    """A credential that hides itself from ``repr``, ``str``, logs and tracebacks."""

    __slots__ = ("__weakref__", "_forms", "_value")

    def __init__(self, value: str | Secret) -> None:
        self._value = value.reveal() if isinstance(value, Secret) else value
        if not isinstance(self._value, str) or not self._value:
            raise ValueError("an API key must be a non-empty string")
        self._forms = _forms(self._value)
        _registry.add(self)

    def reveal(self) -> str:
        """The secret itself; only for building the ``Authorization`` header."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


def _forms(value: str) -> tuple[str, ...]:
    """The secret and what a server could echo of it.

    Its Base64 (a ``Basic`` header), its decoding when it is Base64, its
    escaping inside a JSON string (a key with ``"`` or ``\\`` echoed in an
    ``error`` event) and its percent-encodings (a key sent in a query).
    """
    forms = [value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]]
    forms += [quote(value, safe=""), quote_plus(value, safe="")]
    raw = value.encode("utf-8", "surrogatepass")
    forms.append(base64.b64encode(raw).decode("ascii"))
    try:
        decoded = base64.b64decode(raw, validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        decoded = ""
    if decoded.isprintable():
        # "id:secret" pairs: the server may echo either half.
        forms += [decoded, *decoded.split(":", 1)]
    return tuple(sorted({f for f in forms if len(f) >= _MIN_FORM}, key=len, reverse=True))


class _Registry:
    """Every live :class:`Secret` (weakly) and the most recent transient ones."""

    def __init__(self) -> None:
        # By identity: equal secrets held by different owners each count (a WeakSet would keep one).
        self._secrets: weakref.WeakValueDictionary[int, Secret] = weakref.WeakValueDictionary()
        self._transient: collections.deque[Secret] = collections.deque(maxlen=_TRANSIENT_KEPT)

    def add(self, secret: Secret) -> None:
        self._secrets[id(secret)] = secret

    def keep(self, secret: Secret) -> None:
        """Hold a secret nobody else holds (a per-connection session key) for a while."""
        self._transient.append(secret)

    def forms(self) -> list[str]:
        found = {form for secret in list(self._secrets.values()) for form in secret._forms}
        return sorted(found, key=len, reverse=True)


_registry = _Registry()


def transient_secret(value: str) -> str:
    """Register a short-lived secret (Inworld's session key) for redaction; return it."""
    _registry.keep(Secret(value))
    return value


def keep_secret(secret: Secret) -> None:
    """Keep redacting ``secret`` for a while after its owner drops it (a rotated, minted key)."""
    _registry.keep(secret)


def redact(text: str) -> str:
    """``text`` with every known secret (in every form it is sent in) replaced by ``***``."""
    if not text:
        return text
    for form in _registry.forms():
        if form in text:
            text = text.replace(form, REDACTED)
    return text


def contains_secret(text: str) -> bool:
    """True when ``text`` holds a known secret."""
    return redact(text) != text


class RedactingFilter(logging.Filter):
    """Rewrites a log record's message and traceback with :func:`redact`; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave the record to logging's own error path
            return True
        clean = redact(message)
        if clean != message or (record.args and contains_secret(repr(record.args))):
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            clean = redact(text)
            if clean != text:
                record.exc_info, record.exc_text = None, clean
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = RedactingFilter()


def install_log_redaction() -> None:
    """Attach the redacting filter to the library's and the WebSocket libraries' loggers.

    A logger's filters only see records logged on that logger, not its
    children's, so every existing logger under :data:`LOGGER_PREFIXES` gets
    it; this runs again at each connect for loggers created since.
    """
    manager = logging.Logger.manager
    names = [name for name in list(manager.loggerDict) if name.split(".")[0] in LOGGER_PREFIXES]
    for name in {*LOGGER_PREFIXES, *names}:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
