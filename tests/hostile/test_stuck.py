"""Stuck states: waiting states a silent peer could hold forever, and commands that move before they fail.

Every waiting state of every machine has a deadline and a declared way out
(the list is in ``engine/core/states.py``); these tests take the response
slot's ways out against a real peer on 127.0.0.1 that goes quiet at each
point: mid-stream after ``interrupt()`` (the issue's case), mid-stream with
nobody interrupting, after a cancel deferred until ``response.created``, and
before ``response.created`` (a follow-up the server owed after tools is in the core tests: no
provider here has the server continue by itself). Each
deadline is short here (``SETTINGS``) so each test takes well under a second.

Commands check their arguments before anything changes: each bad call raises
at the call, and a valid ``send_text`` afterwards gets its response.

Events that do not fit the state (a tool call for a response not in flight,
stray deltas) are reported and ignored: nothing runs, nothing is sent.

The pure-core side of each (every phase, every command, every response-scoped
event) is in ``tests/core/test_deadlines.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import engine
from engine import events as ev
from engine.actors.dispatch import EventStream
from engine.protocol.client import ResponseParams
from tests.actors.helpers import collect_until, make_session, next_event, round_trip
from tests.actors.peer import Peer, audio_deltas, response_head, running_peer

pytestmark = pytest.mark.anyio

SETTINGS = engine.SessionSettings(
    close_timeout=0.5, response_timeout=0.3, stall_timeout=0.3, cancel_timeout=0.2
)
"""Short deadlines: each way out is taken within a fraction of a second."""


def stalling(peer: Peer, *, answer_cancel: bool = False) -> None:
    """The first response starts, streams two deltas and goes quiet; later ones are normal.

    ``response.cancel`` is ignored unless ``answer_cancel`` (then it gets ``response.done`` cancelled).
    """

    @peer.on("response.create")
    def create(_: dict[str, Any]) -> list[dict[str, Any]]:
        if peer.responses == 0:
            peer.responses += 1
            return response_head("resp_1", "item_a1") + audio_deltas("resp_1", "item_a1", 2)
        return peer.next_audio_response()  # resp_2, resp_3...

    @peer.on("response.cancel")
    def cancel(message: dict[str, Any]) -> list[dict[str, Any]]:
        if not answer_cancel:
            return []
        rid = message.get("response_id") or "resp_1"
        return [{"type": "response.done", "response": {"id": rid, "status": "cancelled", "output": []}}]


async def _answered(stream: EventStream, rid: str) -> list[Any]:
    """Events up to the ``ResponseDone`` of ``rid``."""
    return await collect_until(stream, lambda e: isinstance(e, ev.ResponseDone) and e.response_id == rid)


def _codes(events: list[Any]) -> list[str]:
    return [e.code for e in events if isinstance(e, ev.Error)]


# ---------------------------------------------------------------------- the response slot's deadlines


async def test_interrupt_of_a_stalled_response_does_not_wedge_the_slot() -> None:
    """The issue's case: a stream stalls, interrupt(), no response.done ever; the next text is answered."""
    with anyio.fail_after(5):
        async with running_peer() as peer:
            stalling(peer)
            session = make_session(peer, settings=SETTINGS)
            async with session.connect():
                stream = session.events()
                await session.send_text("Tell me a story")
                await next_event(stream, ev.AudioOut)
                await session.interrupt()
                await session.send_text("Are you there?")  # owed until the slot is free
                seen = await _answered(stream, "resp_2")
    assert peer.sent_types().count("response.cancel") == 1
    assert peer.sent_types().count("response.create") == 2  # before the fix: 1, and nothing ever again
    (error,) = [e for e in seen if isinstance(e, ev.Error)]
    assert (error.code, error.source, error.fatal) == ("cancel_timeout", "server", False)
    assert "resp_1" in error.message


async def test_a_response_that_goes_quiet_is_cancelled_and_reported() -> None:
    """Nobody interrupts: the stall deadline cancels it, the server's done frees the slot."""
    with anyio.fail_after(5):
        async with running_peer() as peer:
            stalling(peer, answer_cancel=True)
            session = make_session(peer, settings=SETTINGS)
            async with session.connect():
                stream = session.events()
                await session.send_text("Tell me a story")
                seen = await _answered(stream, "resp_1")
                await session.send_text("Hello?")
                seen += await _answered(stream, "resp_2")
    assert _codes(seen) == ["response_stalled"]
    assert [m.get("response_id") for m in peer.of_type("response.cancel")] == ["resp_1"]
    done = [e for e in seen if isinstance(e, ev.ResponseDone)]
    assert [(d.response_id, d.status) for d in done] == [("resp_1", "cancelled"), ("resp_2", "completed")]


async def test_a_quiet_response_whose_cancel_is_ignored_too_is_given_up() -> None:
    """Both deadlines in a row: stalled, cancelled, no answer; the slot is freed and owed work goes on."""
    with anyio.fail_after(5):
        async with running_peer() as peer:
            stalling(peer)
            session = make_session(peer, settings=SETTINGS)
            async with session.connect():
                stream = session.events()
                await session.send_text("Tell me a story")
                await next_event(stream, ev.AudioOut)
                await session.send_text("Hello?")  # owed behind the stalled response
                seen = await _answered(stream, "resp_2")
    assert _codes(seen) == ["response_stalled", "cancel_timeout"]
    assert session.state is engine.State.CLOSED


async def test_a_cancel_deferred_until_created_has_its_own_deadline() -> None:
    """cancel_response() before response.created; the server then ignores the cancel it got."""
    with anyio.fail_after(5):
        async with running_peer() as peer:
            stalling(peer)
            created = anyio.Event()

            @peer.on("response.create")
            def held(_: dict[str, Any]) -> list[dict[str, Any]]:
                if peer.responses == 0:
                    peer.responses += 1
                    created.set()
                    return []  # response.created comes later, pushed by the test
                return peer.next_audio_response()

            settings = engine.SessionSettings(close_timeout=0.5, cancel_timeout=0.2)
            session = make_session(peer, settings=settings)
            async with session.connect():
                stream = session.events()
                await session.send_text("Tell me a story")
                await created.wait()
                await session.cancel_response()
                await peer.push(response_head("resp_1", "item_a1"))
                await peer.wait_for("response.cancel")
                error = await next_event(stream, ev.Error)
                await session.send_text("Hello?")
                await _answered(stream, "resp_2")
    assert error.code == "cancel_timeout"


async def test_a_request_the_server_never_acknowledges_is_given_up() -> None:
    """No response.created for the first response.create: response_timeout, then the next text is answered."""
    with anyio.fail_after(5):
        async with running_peer() as peer:

            @peer.on("response.create")
            def create(_: dict[str, Any]) -> list[dict[str, Any]]:
                if peer.responses == 0:
                    peer.responses += 1
                    return []
                return peer.next_audio_response()

            session = make_session(peer, settings=SETTINGS)
            async with session.connect():
                stream = session.events()
                await session.send_text("Hello?")
                error = await next_event(stream, ev.Error)
                await session.send_text("Hello again?")
                await _answered(stream, "resp_2")
    assert (error.code, error.fatal) == ("response_timeout", False)


# ---------------------------------------------------------------------- arguments before state

BAD_CALLS: dict[str, tuple[Callable[[engine.Session], Any], type[Exception]]] = {
    "send_text(bytes)": (lambda s: s.send_text(b"bytes"), TypeError),  # type: ignore[arg-type]
    "send_text(None)": (lambda s: s.send_text(None), TypeError),  # type: ignore[arg-type]
    "send_text(123)": (lambda s: s.send_text(123), TypeError),  # type: ignore[arg-type]
    "create_response(str)": (lambda s: s.create_response("now"), TypeError),  # type: ignore[arg-type]
    "create_response(NaN)": (
        lambda s: s.create_response(ResponseParams(metadata={"x": math.nan})),
        ValueError,
    ),
    "update(dict)": (lambda s: s.update({"voice": "Clive"}), TypeError),  # type: ignore[arg-type]
}
SYNC_BAD_CALLS: dict[str, tuple[Callable[[engine.Session], Any], type[Exception]]] = {
    "audio_played(None, 10)": (lambda s: s.audio_played(None, 10), TypeError),  # type: ignore[arg-type]
    "audio_played('item', -1)": (lambda s: s.audio_played("item_a1", -1), ValueError),
    "audio_played('item', nan)": (lambda s: s.audio_played("item_a1", math.nan), ValueError),
}


@pytest.mark.parametrize("name", [*BAD_CALLS, *SYNC_BAD_CALLS])
async def test_a_bad_call_raises_at_the_call_and_the_next_text_is_answered(name: str) -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer, settings=SETTINGS)
            async with session.connect():
                stream = session.events()
                if name in BAD_CALLS:
                    call, error = BAD_CALLS[name]
                    with pytest.raises(error, match=r"\(\)"):
                        await call(session)
                else:
                    call, error = SYNC_BAD_CALLS[name]
                    with pytest.raises(error, match=r"\(\)"):
                        call(session)
                assert (session.state, session.phase) == (engine.State.SESSION_READY, engine.Phase.IDLE)
                await session.send_text("Hello?")
                seen = await _answered(stream, "resp_1")
    assert not [e for e in seen if isinstance(e, ev.Error)]
    # Nothing of the bad call reached the wire: one user item, one request.
    assert peer.sent_types() == ["session.update", "conversation.item.create", "response.create"]


# ---------------------------------------------------------------------- events that do not fit the state


async def test_a_tool_call_the_server_never_made_is_reported_and_not_run() -> None:
    """arguments.done for an unannounced item of a response not in flight: no tool run, no output sent."""
    ran: list[str] = []
    with anyio.fail_after(5):
        async with running_peer() as peer:

            def get_weather(city: str) -> str:
                ran.append(city)
                return "sunny"

            session = make_session(peer, settings=SETTINGS)
            session.add_tool(engine.Tool(name="get_weather", handler=get_weather))
            async with session.connect():
                stream = session.events()
                stray = {"response_id": "resp_ghost", "item_id": "item_ghost", "output_index": 0}
                await peer.push(
                    [
                        {"type": "response.function_call_arguments.done", **stray, "call_id": "call_ghost",
                         "name": "get_weather", "arguments": '{"city": "Paris"}'},
                        {"type": "response.output_audio.delta", **stray, "content_index": 0, "delta": "AAAA"},
                    ]
                )  # fmt: skip
                first = await next_event(stream, ev.Error)
                second = await next_event(stream, ev.Error)
                await round_trip(session, peer)
                await session.send_text("Hello?")
                seen = await _answered(stream, "resp_1")
    assert [(e.code, e.source, e.fatal) for e in (first, second)] == [
        ("unexpected_event", "protocol", False)
    ] * 2
    assert ran == []
    assert not [m for m in peer.received if m.get("item", {}).get("type") == "function_call_output"]
    assert not [e for e in seen if isinstance(e, ev.ToolCall | ev.ToolResult)]
    assert not [e for e in seen if isinstance(e, ev.AudioOut) and e.response_id == "resp_ghost"]
