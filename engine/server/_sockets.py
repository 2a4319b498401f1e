"""Socket-level faults the transport interface does not offer: abort and stall.

The :class:`~engine.transports.base.Transport` protocol can only close
cleanly. To drop a connection without a close frame, or to stop answering
pings and close frames while still reading, these helpers reach into the
known transports (websockets under asyncio, trio-websocket under trio, the
in-memory pair). A transport that offers ``abort()`` / ``stall()`` itself is
used as is. Anything unknown degrades to a clean close (abort) or to merely
not sending (stall), with a warning.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.transports.base import Transport

logger = logging.getLogger(__name__)


def _discard(data: Any) -> None:
    """Swallow received bytes (the socket keeps being read; nothing is parsed)."""


async def abort(transport: Transport) -> None:
    """Drop the connection without a close frame; the peer sees an abnormal closure (1006)."""
    own = getattr(transport, "abort", None)
    if callable(own):
        await own()
        return
    ws = getattr(transport, "_ws", None)
    if ws is not None and hasattr(ws, "transport") and hasattr(ws.transport, "abort"):
        ws.transport.abort()  # websockets (asyncio): RST, no close frame
        return
    stream = getattr(ws, "_stream", None)
    if stream is not None:
        import trio  # only trio-websocket has _stream; trio is running

        await trio.aclose_forcefully(stream)  # TCP closed under trio-websocket, no close frame
        return
    if hasattr(transport, "close_code"):  # the in-memory pair: 1006 is what a drop looks like
        await transport.aclose(1006, "")
        return
    logger.warning("cannot abort %r: closing it with 1011 instead", transport)
    await transport.aclose(1011, "")


def stall(transport: Transport) -> None:
    """Stop parsing what arrives: no pongs, no close-frame answers, no messages."""
    own = getattr(transport, "stall", None)
    if callable(own):
        own()
        return
    ws = getattr(transport, "_ws", None)
    protocol = getattr(ws, "protocol", None)
    if protocol is not None and hasattr(protocol, "receive_data"):
        protocol.receive_data = _discard  # websockets (asyncio) sans-IO protocol
        task = getattr(ws, "keepalive_task", None)
        if task is not None:
            task.cancel()  # a silent server does not ping either
        return
    wsproto = getattr(ws, "_wsproto", None)
    if wsproto is not None:
        wsproto.receive_data = _discard  # trio-websocket's wsproto connection
        return
    if not hasattr(transport, "close_code"):
        logger.warning("cannot stall %r: it will still answer pings and close frames", transport)
