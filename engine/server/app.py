"""The local realtime server: an Inworld-like endpoint on loopback, for the demo, tests and benchmarks.

:class:`LocalServer` is a :class:`~engine.transports.base.ServerApp`: serve it
on a socket with :meth:`LocalServer.run` / :meth:`LocalServer.running` (both
backends, through :func:`engine.transports.listen.serve`) or in memory with
:class:`engine.transports.MemoryConnector`. Tests steer it through a few
hooks: scripted transcripts (:meth:`say_next`), faults (:meth:`inject`,
:meth:`refuse_next`), recorded events (:meth:`replay`), and each connection's
conversation (``server.connections[-1].conversation.items``).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, NoReturn
from urllib.parse import urlencode

import anyio
import anyio.abc

from engine.errors import unwrap
from engine.server.connection import ServerConnection
from engine.server.faults import NO_FAULTS, Faults, Quirks, Replay
from engine.server.handshake import check_request, dialect_of
from engine.server.session import ServerSession
from engine.server.session_config import default_session
from engine.transports.base import Transport, TransportSettings
from engine.transports.listen import serve

logger = logging.getLogger(__name__)

PATH = "/api/v1/realtime/session"
"""Inworld's endpoint path (any path is accepted; this one is what :meth:`LocalServer.url` uses)."""


class LocalServer:
    """A local stand-in for the Inworld Realtime endpoint.

    Args:
        pace: response pacing: 1.0 streams audio in real time, 0.5 twice as
            fast, 0 as fast as possible.
        faults: faults for every connection (overridden per connection by :meth:`inject`).
        expected_key: when set, the only credential accepted in ``Authorization``.
        ping_interval: seconds between Inworld ``ping`` events (``None``: no pings).
        session: overrides of the default session every connection starts with
            (a GA ``session`` object, validated here).
        settings: socket settings of the listening server.
        quirks: Inworld behaviours beyond GA to imitate (off by default).
    """

    def __init__(
        self,
        *,
        pace: float = 1.0,
        faults: Faults | None = None,
        expected_key: str | None = None,
        ping_interval: float | None = 15.0,
        session: Mapping[str, Any] | None = None,
        settings: TransportSettings | None = None,
        quirks: Quirks | None = None,
    ) -> None:
        if pace < 0:
            raise ValueError(f"pace must be >= 0, got {pace}")
        self.pace = pace
        self.faults = faults or NO_FAULTS
        self.expected_key = expected_key
        self.ping_interval = ping_interval
        self.session = dict(session or {})
        default_session(self.session)  # refuse a bad default now, not per connection
        self.settings = settings or TransportSettings()
        self.quirks = quirks or Quirks()
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.connections: list[ServerConnection] = []
        self.refused = 0
        self._refusals: deque[int] = deque()
        self._next_faults: deque[Faults] = deque()
        self._faults_at: dict[int, Faults] = {}
        self._next_replays: deque[Replay] = deque()
        self._replays_at: dict[int, Replay] = {}
        self._shared_scripts: deque[str] = deque()
        self._scripts_at: dict[int, list[str]] = {}
        self._changed: anyio.Event | None = None

    # -- hooks for tests ------------------------------------------------------

    def say_next(self, text: str, *, index: int | None = None) -> None:
        """Script the transcript of the next committed utterance.

        With ``index=None`` it goes to whichever connection commits audio next;
        with an index, to that connection (now or once it exists).
        """
        if index is None:
            self._shared_scripts.append(text)
        elif index < len(self.connections):
            self.connections[index].say_next(text)
        else:
            self._scripts_at.setdefault(index, []).append(text)

    def inject(self, faults: Faults, *, index: int | None = None) -> None:
        """Apply ``faults`` to the next connection (queued in order), or to the one with ``index``."""
        if index is None:
            self._next_faults.append(faults)
        else:
            self._faults_at[index] = faults

    def refuse_next(self, count: int = 1, status: int = 503) -> None:
        """Refuse the next ``count`` handshakes with HTTP ``status``."""
        self._refusals.extend([status] * count)

    def replay(self, events: Iterable[Mapping[str, Any]], *, index: int | None = None) -> None:
        """Serve recorded server events (see :class:`Replay`) to the next connection, or one by index."""
        recorded = Replay(events=events)
        if index is None:
            self._next_replays.append(recorded)
        else:
            self._replays_at[index] = recorded

    async def wait_for_connection(self, index: int = 0) -> ServerConnection:
        """Wait until connection ``index`` has been accepted; return it."""
        while len(self.connections) <= index:
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()
        return self.connections[index]

    def url(self, *, key: str = "local-session", path: str = PATH) -> str:
        """A ``ws://`` URL of the running server with the query Inworld requires."""
        if self.port is None:
            raise RuntimeError("the server is not listening yet")
        return f"ws://{self.host}:{self.port}{path}?{urlencode({'key': key, 'protocol': 'realtime'})}"

    def openai_url(self, *, model: str | None = None, path: str = "/v1/realtime") -> str:
        """A ``ws://`` URL of the running server in OpenAI's form.

        ``engine.OpenAI(url=server.openai_url())`` adds its own ``model``; a bare
        client passes ``model=`` to get it in the query.
        """
        if self.port is None:
            raise RuntimeError("the server is not listening yet")
        query = f"?{urlencode({'model': model})}" if model is not None else ""
        return f"ws://{self.host}:{self.port}{path}{query}"

    def headers(self, *, scheme: str = "Basic") -> dict[str, str]:
        """Handshake headers the server accepts (the expected key, or any key)."""
        return {"Authorization": f"{scheme} {self.expected_key or 'local-key'}"}

    # -- the ServerApp protocol -----------------------------------------------

    def check_handshake(self, path: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
        """Refuse scripted refusals (503), then requests Inworld or OpenAI would refuse (401, 400)."""
        if self._refusals:
            self.refused += 1
            status = self._refusals.popleft()
            return (status, "Service Unavailable" if status == 503 else "Refused")
        return check_request(path, headers, expected_key=self.expected_key)

    async def handle(self, transport: Transport, path: str, headers: Mapping[str, str]) -> None:
        """Serve one accepted connection until it ends."""
        index = len(self.connections)
        faults = self._faults_at.pop(index, None) or (
            self._next_faults.popleft() if self._next_faults else None
        )
        replay = self._replays_at.pop(index, None) or (
            self._next_replays.popleft() if self._next_replays else None
        )
        core = None
        if replay is None:
            core = ServerSession(
                now=anyio.current_time(),
                index=index,
                epoch_ms=int(time.time() * 1000),
                pace=self.pace,
                ping_interval=self.ping_interval,
                session=self.session,
                transcripts=self._shared_script,
                quirks=self.quirks,
                dialect=dialect_of(path),
            )
            for text in self._scripts_at.pop(index, []):
                core.say_next(text)
        connection = ServerConnection(
            index=index,
            transport=transport,
            path=path,
            core=core,
            faults=faults or self.faults,
            replay=replay,
        )
        self.connections.append(connection)
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        logger.info("connection %d accepted%s", index, " (replay)" if replay else "")
        await connection.run()
        logger.info("connection %d ended", index)

    def _shared_script(self) -> str | None:
        return self._shared_scripts.popleft() if self._shared_scripts else None

    # -- running --------------------------------------------------------------

    async def run(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (0: any free port) until cancelled; reports the port when listening."""
        self.host = host
        async with anyio.create_task_group() as group:
            self.port = await group.start(partial(serve, self, host, port, settings=self.settings))
            task_status.started(self.port)

    @asynccontextmanager
    async def running(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[LocalServer]:
        """Serve in the background for the duration of the block; the port is set on entry."""
        try:
            async with anyio.create_task_group() as group:
                await group.start(self.run, host, port)
                try:
                    yield self
                finally:
                    group.cancel_scope.cancel()
        except BaseExceptionGroup as group_error:
            _raise_one(group_error)


def _raise_one(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Re-raise the one exception of a task group (the caller's own, usually): errors.unwrap's policy."""
    raise unwrap(group, cancelled=anyio.get_cancelled_exc_class()) from None
