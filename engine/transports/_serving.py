"""What every server (socket or in-memory) does around a :class:`ServerApp`."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping

import anyio

from engine.errors import ConnectionClosed
from engine.transports.base import ServerApp, Transport
from engine.transports.urls import redact_headers, redact_url

logger = logging.getLogger("engine.transports.listen")


class RequestHeaders(Mapping[str, str]):
    """Handshake headers, looked up case-insensitively as HTTP requires.

    Repeated headers are joined with ``", "``. The ``repr`` is redacted, so a
    stray log of the mapping leaks no credentials.
    """

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        for name, value in items:
            key = name.lower()
            if key in self._items:
                value = f"{self._items[key][1]}, {value}"
            self._items[key] = (name, value)

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"RequestHeaders({redact_headers(self)!r})"


def check_handshake(app: ServerApp, path: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
    """Ask ``app`` about a handshake; an app that crashes refuses it with 500."""
    try:
        return app.check_handshake(path, headers)
    except Exception:
        logger.exception("check_handshake failed for %s", redact_url(path))
        return (500, "internal error")


async def run_app(app: ServerApp, transport: Transport, path: str, headers: Mapping[str, str]) -> None:
    """Run ``app.handle`` for one connection, then close it. Never raises an ``Exception``.

    The close code tells the client how it ended: 1000 when the handler
    returned, 1011 when it crashed (logged here, so one bad connection never
    stops the server), 1001 when the server is shutting down (cancelled).
    """
    code, reason = 1000, ""
    try:
        await app.handle(transport, path, headers)
    except anyio.get_cancelled_exc_class():
        code, reason = 1001, "server shutting down"
        raise
    except ConnectionClosed as exc:
        logger.debug("client closed %s with code %s", redact_url(path), exc.code)
    except Exception:
        logger.exception("handler failed for %s", redact_url(path))
        code, reason = 1011, "internal error"
    finally:
        with anyio.CancelScope(shield=True):  # aclose is bounded by close_timeout
            await transport.aclose(code, reason)
