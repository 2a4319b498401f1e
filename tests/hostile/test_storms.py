"""Peers that would make the client reconnect forever, and handshakes that never complete.

A storm is a session that keeps opening sockets at the first backoff delay: a
server that drops every session right after it is ready (or mid-response, or
at ``session.created``), closes cleanly, refuses a message with 1009, expires
the session, or accepts sockets and never makes them ready. Each must back off
and, past ``ReconnectPolicy.max_attempts``, end with a fatal
``Error(code="connection_failed")`` and ``Closed`` that say why. A server that
garbles, refuses or never answers the upgrade must surface as the library's
``HandshakeError``/``TransportError`` under both backends.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc
import attrs
import pytest

import engine
from engine import events as ev
from engine.errors import ConnectionClosed, HandshakeError, SessionClosed, TransportError
from engine.profiles import INWORLD
from engine.transports import TransportSettings, connect
from tests.actors.helpers import inworld, make_session
from tests.actors.peer import Peer, Reply, response_head, running_peer

pytestmark = pytest.mark.anyio

QUICK = engine.ReconnectPolicy(max_attempts=3, initial_delay=0.01, multiplier=2.0, jitter=0.0)


def _settings(policy: engine.ReconnectPolicy = QUICK, **extra: Any) -> engine.SessionSettings:
    options: dict[str, Any] = {"close_timeout": 0.5, "ready_timeout": 2.0, **extra}
    return engine.SessionSettings(reconnect=policy, **options)


class DroppingPeer(Peer):
    """Closes every socket (with ``code``) right after it has sent an event of type ``after``.

    ``after="session.updated"``: right after the session is ready;
    ``"response.created"``: mid-response (answers ``response.create`` with only the head);
    ``"session.created"``: before the session is ever ready. ``sockets`` limits the
    drops to the first N sockets (``None``: every one).
    """

    def __init__(self, after: str, code: int = 1011, reason: str = "bye", sockets: int | None = None) -> None:
        super().__init__()
        self.after, self.code, self.reason, self.sockets = after, code, reason, sockets
        self.connections = 0
        if after == "response.created":
            self.on("response.create")(self._head_only)

    def _head_only(self, _: dict[str, Any]) -> Reply:
        self.responses += 1
        return response_head(f"resp_{self.responses}", f"item_a{self.responses}")

    async def handle(self, transport: Any, path: str, headers: Any) -> None:
        self.connections += 1
        await super().handle(transport, path, headers)

    async def push(self, events: Reply) -> None:
        await super().push(events)
        dropping = self.sockets is None or self.connections <= self.sockets
        if dropping and any(e["type"] == self.after for e in events):
            assert self.transport is not None
            await self.transport.aclose(self.code, self.reason)


async def _run_until_given_up(
    peer: Peer, session: engine.Session, body: Any = None
) -> tuple[list[Any], BaseException | None]:
    """Connect, run ``body``, wait for the session to end; the events seen and what connect() raised."""
    seen: list[Any] = []
    session.on()(seen.append)
    raised: BaseException | None = None
    try:
        async with session.connect():
            if body is not None:
                await body(session)
            await anyio.sleep_forever()  # cancelled when the session gives up
    except (SessionClosed, TransportError) as exc:
        raised = exc
    return seen, raised


def _gave_up(seen: list[Any]) -> ev.Error:
    fatal = [e for e in seen if isinstance(e, ev.Error) and e.fatal]
    assert [e.code for e in fatal] == ["connection_failed"], seen
    closed = [e for e in seen if isinstance(e, ev.Closed)]
    assert len(closed) == 1 and closed[0].error == fatal[0]
    return fatal[0]


@pytest.mark.parametrize(
    ("code", "named"),
    [(1011, "1011 (server error)"), (1000, "1000 (normal closure)"), (1009, "1009 (message too big)")],
)
async def test_a_server_that_drops_every_session_after_ready_is_given_up_on(code: int, named: str) -> None:
    # Before the fix every ready socket reset the attempt counter: 47-48 connections in 6 s.
    peer = DroppingPeer("session.updated", code=code)
    with anyio.fail_after(5):
        async with running_peer(peer):
            seen, raised = await _run_until_given_up(peer, make_session(peer, settings=_settings()))
    assert peer.connections == 1 + QUICK.max_attempts
    delays = [e.delay for e in seen if isinstance(e, ev.Reconnecting)]
    assert delays == [0.01, 0.02, 0.04]  # the backoff grows
    error = _gave_up(seen)
    assert "kept dropping right after it was ready" in error.message
    assert named in error.message  # the close code and what it means (1009: message too big)
    assert isinstance(raised, SessionClosed) and "connection_failed" in str(raised)


async def test_a_server_that_drops_mid_response_on_every_restore_is_given_up_on() -> None:
    # The restore resumes the cut response, the server drops it again: the same storm, later in the turn.
    peer = DroppingPeer("response.created")

    async def ask(session: engine.Session) -> None:
        await session.send_text("hello?")

    with anyio.fail_after(5):
        async with running_peer(peer):
            seen, _ = await _run_until_given_up(peer, make_session(peer, settings=_settings()), ask)
    assert peer.connections == 1 + QUICK.max_attempts
    assert len(peer.of_type("response.create")) == peer.connections  # each restore resumed it
    assert "kept dropping right after it was ready" in _gave_up(seen).message


async def test_a_server_that_drops_at_session_created_is_given_up_on_at_the_first_connect() -> None:
    peer = DroppingPeer("session.created")
    with anyio.fail_after(5):
        async with running_peer(peer):
            session = make_session(peer, settings=_settings())
            seen: list[Any] = []
            session.on()(seen.append)
            with pytest.raises(ConnectionClosed, match="1011"):
                async with session.connect():
                    pytest.fail("the session can never be ready")
    assert peer.connections == 1 + QUICK.max_attempts
    assert "gave up after 3 attempts" in _gave_up(seen).message


async def test_a_socket_that_stayed_healthy_starts_a_new_failure_run() -> None:
    # healthy_after=0: every ready socket counts as healthy, so each drop is attempt 1 again
    # (the old behaviour, now a policy choice); three drops with max_attempts=1 do not give up.
    peer = DroppingPeer("session.updated", sockets=3)
    policy = attrs.evolve(QUICK, max_attempts=1, healthy_after=0.0)
    with anyio.fail_after(5):
        async with running_peer(peer):
            session = make_session(peer, settings=_settings(policy))
            stream = session.events(ev.Reconnected)
            async with session.connect():
                for _ in range(3):
                    await stream.__anext__()
                await session.send_text("still there?")
                await session.wait_for(ev.ResponseDone, timeout=2)
    assert peer.connections == 4


async def test_a_reconnect_socket_that_never_becomes_ready_is_dropped_and_counted() -> None:
    # Before the fix the session waited in `reconnecting` on the silent socket forever.
    class SilentAfterFirst(DroppingPeer):
        async def handle(self, transport: Any, path: str, headers: Any) -> None:
            self.connections += 1
            if self.connections == 1:
                await Peer.handle(self, transport, path, headers)
                return
            await self.stopping.wait()  # accepted, never says session.created

    peer = SilentAfterFirst("session.updated")
    with anyio.fail_after(5):
        async with running_peer(peer):
            session = make_session(peer, settings=_settings(ready_timeout=0.2))
            seen, _ = await _run_until_given_up(peer, session)
    assert peer.connections == 1 + QUICK.max_attempts
    error = _gave_up(seen)
    assert "did not make the session ready within 0.2s" in error.message


async def test_a_clean_server_close_reconnects_and_restores() -> None:
    # Decision (issue 11): a close the server starts, of any code, is not the caller hanging up.
    peer = DroppingPeer("session.updated", code=1000, sockets=1)
    with anyio.fail_after(5):
        async with running_peer(peer):
            session = make_session(peer, settings=_settings())
            async with session.connect():
                await session.wait_for(ev.Reconnected, timeout=2)
                await session.send_text("still there?")
                await session.wait_for(ev.ResponseDone, timeout=2)
                assert session.state is engine.State.SESSION_READY
    assert peer.connections == 2


async def test_a_profile_can_declare_that_a_clean_server_close_ends_the_session() -> None:
    peer = DroppingPeer("session.updated", code=1000, sockets=1)
    profile = attrs.evolve(INWORLD, server_close_reconnects=False)
    with anyio.fail_after(5):
        async with running_peer(peer):
            session = make_session(peer, provider=inworld(peer, profile=profile), settings=_settings())
            seen, raised = await _run_until_given_up(peer, session)
    assert peer.connections == 1
    assert not [e for e in seen if isinstance(e, ev.Reconnecting)]
    closed = [e for e in seen if isinstance(e, ev.Closed)]
    assert len(closed) == 1 and "the server closed the session" in closed[0].reason
    assert "1000" in closed[0].reason
    assert isinstance(raised, SessionClosed)


def _expiring(peer: Peer, sockets: int | None) -> None:
    @peer.on("session.update")
    def expire(message: dict[str, Any]) -> Reply:
        updated: Reply = [{"type": "session.updated", "session": message["session"]}]
        if sockets is not None and len(peer.paths) > sockets:
            return updated
        error = {"type": "invalid_request_error", "code": "session_expired", "message": "session expired"}
        return [*updated, {"type": "error", "error": error}]


async def test_session_expired_rolls_over_instead_of_ending_the_call() -> None:
    peer = Peer()
    _expiring(peer, sockets=1)
    with anyio.fail_after(5):
        async with running_peer(peer):
            session = make_session(peer, settings=_settings())
            seen: list[Any] = []
            session.on(ev.Error)(seen.append)
            async with session.connect():
                await session.wait_for(ev.Reconnected, timeout=2)
                await session.send_text("still there?")
                await session.wait_for(ev.ResponseDone, timeout=2)
    assert [(e.code, e.fatal) for e in seen] == [("session_expired", False)]
    assert len(peer.paths) == 2


async def test_a_server_that_expires_every_session_at_once_is_given_up_on() -> None:
    peer = Peer()
    _expiring(peer, sockets=None)
    with anyio.fail_after(5):
        async with running_peer(peer):
            seen, _ = await _run_until_given_up(peer, make_session(peer, settings=_settings()))
    assert len(peer.paths) == 1 + QUICK.max_attempts
    assert "kept dropping right after it was ready" in _gave_up(seen).message


# ---------------------------------------------------------------------- handshakes that never complete

ANSWERS: dict[str, bytes | None] = {
    "hangs up": b"",
    "hangs up mid-answer": b"HTTP/1.1 101 Switching",
    "answers garbage": b"\x00\x01 not http at all\r\n\r\n",
    "answers 200": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "answers 101 without accept": (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    ),
    "never answers": None,
}


@pytest.mark.parametrize("answer", list(ANSWERS))
async def test_a_handshake_that_never_completes_is_a_library_error(answer: str) -> None:
    # Before the fix, under trio, the garbled answers surfaced as h11's LocalProtocolError.
    reply = ANSWERS[answer]

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                request += await stream.receive()
            if reply is None:
                await anyio.sleep(5)
            elif reply:
                await stream.send(reply)

    with anyio.fail_after(3):
        async with (
            await anyio.create_tcp_listener(local_host="127.0.0.1") as listener,
            anyio.create_task_group() as group,
        ):
            group.start_soon(listener.serve, handle)
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            settings = TransportSettings(connect_timeout=0.3, close_timeout=0.2)
            with pytest.raises(TransportError) as caught:
                async with connect(f"ws://127.0.0.1:{port}/", {"Authorization": "Bearer k"}, settings):
                    pytest.fail("the handshake cannot complete")
            group.cancel_scope.cancel()
    if answer.startswith("answers"):
        assert isinstance(caught.value, HandshakeError)
    if answer == "never answers":
        assert "timed out" in str(caught.value)
