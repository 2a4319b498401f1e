"""Text WebSocket transports for the running backend.

:func:`connect` is the default :class:`Connector`: it applies the URL policy
(:func:`check_url`) and opens the connection with trio-websocket under trio or
websockets under asyncio, so the same code runs on both. :func:`memory_pair`
and :class:`MemoryConnector` stand in for a socket in tests; :func:`serve`
(in :mod:`engine.transports.listen`) is the server side.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import sniffio

from engine.redaction import install_log_redaction
from engine.transports.base import Connector, ServerApp, Transport, TransportSettings
from engine.transports.memory import MemoryConnector, MemoryRequest, MemoryTransport, memory_pair
from engine.transports.urls import check_url, redact_headers, redact_url

__all__ = [
    "Connector",
    "MemoryConnector",
    "MemoryRequest",
    "MemoryTransport",
    "ServerApp",
    "Transport",
    "TransportSettings",
    "check_url",
    "connect",
    "memory_pair",
    "redact_headers",
    "redact_url",
]

logger = logging.getLogger(__name__)


@asynccontextmanager
async def connect(
    url: str, headers: Mapping[str, str] | None = None, settings: TransportSettings | None = None
) -> AsyncIterator[Transport]:
    """Open a WebSocket to ``url`` with the running backend; close it on exit.

    Use as ``async with connect(url, headers, settings) as transport``. The
    close on exit waits at most ``settings.close_timeout``.

    Raises:
        ValueError: the URL is refused by :func:`check_url`.
        HandshakeError: the server answered the upgrade with an HTTP error
            (``is_auth_failure`` for 401/403).
        TransportError: DNS, TCP or TLS failure, or ``connect_timeout`` expired.
        RuntimeError: the running async library is neither trio nor asyncio.
    """
    settings = settings or TransportSettings()
    headers = headers or {}
    check_url(url, settings)
    library = sniffio.current_async_library()
    logger.debug("connecting to %s (%s), headers %s", redact_url(url), library, redact_headers(headers))
    if library == "trio":
        from engine.transports import trio_ws as backend
    elif library == "asyncio":
        from engine.transports import asyncio_ws as backend  # type: ignore[no-redef]
    else:
        raise RuntimeError(f"unsupported async library: {library}")
    install_log_redaction()  # the backend's loggers exist now
    async with backend.connect(url, headers, settings) as transport:
        logger.debug("connected to %s", redact_url(url))
        yield transport
