"""What the Serve tests share: a free port and a deployed gateway's addresses (tests/scale/test_serve*.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from benchmarks._common import free_port
from engine.server import LocalServer

__all__ = ["Deployed", "free_port"]


@attrs.define
class Deployed:
    """A gateway deployed on Serve: its proxy's URL and port, and where its replicas' local server listens."""

    url: str
    port: int
    server_port: int
    key: str
    """The local server's key (the replicas read it through a key callable, never through Ray)."""
    scale: Callable[[int], None] | None = None
    """Redeploy with this many replicas (where the module offers it)."""

    @property
    def stream(self) -> str:
        return self.url.replace("http://", "ws://") + "/twilio/stream"

    def server(self) -> Any:
        """The local realtime server the replicas dial, on its fixed port (a context manager)."""
        return LocalServer(pace=0, ping_interval=None, expected_key=self.key).running(port=self.server_port)
