"""Per-call logs: every record emitted while serving a call carries the call's ids.

The ids live in a context variable. Under asyncio and trio each task has its
own context and a child task starts with a copy of its parent's, so setting the
call's ids around ``session.connect()`` (:func:`call_context`) marks every
record the session's actors log, and nothing another call logs. A
:class:`CallFilter` on a handler copies the ids onto each record as
``record.call_id`` and ``record.carrier_ids`` (``-`` and ``""`` outside a
call), for any standard-library format, e.g. :data:`FORMAT`.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

_CALL: contextvars.ContextVar[tuple[str, tuple[tuple[str, str], ...]] | None] = contextvars.ContextVar(
    "engine_call", default=None
)

FORMAT = "%(asctime)s %(levelname)s %(name)s [call=%(call_id)s%(carrier_ids)s] %(message)s"
"""A format naming the call (use with :class:`CallFilter`)."""


@contextmanager
def call_context(call_id: str, **carrier_ids: str) -> Iterator[None]:
    """Mark what runs inside (and every task started inside) as serving ``call_id``.

    ``carrier_ids`` are the carrier's own ids of the call (``call_sid="CA..."``, ``stream_sid=...``).
    """
    token = _CALL.set((str(call_id), tuple((k, str(v)) for k, v in carrier_ids.items())))
    try:
        yield
    finally:
        _CALL.reset(token)


def current_call() -> tuple[str | None, Mapping[str, str]]:
    """The call being served here and its carrier ids (``None, {}`` outside a call)."""
    value = _CALL.get()
    return (None, {}) if value is None else (value[0], dict(value[1]))


class CallFilter(logging.Filter):
    """Adds ``call_id`` and ``carrier_ids`` to every record (it never drops one).

    Attach it to a handler (``handler.addFilter(CallFilter())``): a handler's
    filters see the records of every logger that propagates to it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        value = _CALL.get()
        if value is None:
            record.call_id, record.carrier_ids = "-", ""
        else:
            record.call_id = value[0]
            record.carrier_ids = "".join(f" {k}={v}" for k, v in value[1])
        return True


def log_calls(handler: logging.Handler | None = None, fmt: str = FORMAT) -> logging.Handler:
    """Install ``handler`` (default: stderr) on the ``engine`` logger with :class:`CallFilter` and ``fmt``."""
    handler = handler or logging.StreamHandler()
    handler.addFilter(CallFilter())
    handler.setFormatter(logging.Formatter(fmt))
    logging.getLogger("engine").addHandler(handler)
    return handler
