"""Wrong data at the edges: bytes, values and text that are not what they claim.

Each section is one class, tried in several variations against a real peer on
127.0.0.1 (or the pure layer where the fault lives): odd PCM byte counts and
wrong argument types for ``send_audio``; tool outcomes that are not one valid
JSON output; tool outputs and items too large for the server; text that UTF-8
cannot carry (lone surrogates) from the server, a tool or the application;
JSON nested too deep to parse or record. Configuration values are checked in
``tests/protocol/test_config.py`` (they fail at construction, before any peer).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import sniffio

import engine
from engine.events import AssistantTranscript, Error, ResponseDone, ToolResult
from engine.record import Recorder
from engine.record import read as read_recording
from tests.actors.helpers import decoded_appends, make_session, round_trip
from tests.actors.peer import Peer, audio_response, function_call_response, running_peer

pytestmark = pytest.mark.anyio

MANUAL = engine.SessionConfig(instructions="be brief", turn_detection=None)


def errors(seen: list[Any], code: str) -> list[Error]:
    """The ``Error`` events of ``code`` among ``seen``."""
    return [e for e in seen if isinstance(e, Error) and e.code == code]


async def _turns(
    peer: Peer, config: engine.SessionConfig, turns: list[list[bytes]], cut: str = "commit"
) -> list[Any]:
    """Send each turn's pieces, ``cut`` between turns (commit, clear or pause), commit the last.

    Returns every event the application saw.
    """
    seen: list[Any] = []
    session = make_session(peer, config)
    session.on()(seen.append)
    async with session.connect():
        for number, turn in enumerate(turns, 1):
            for piece in turn:
                await session.send_audio(piece)
            if number == len(turns) or cut == "commit":
                await session.commit_audio()
            elif cut == "clear":
                await session.clear_audio()
            else:
                session.pause_audio_input(True)
                session.pause_audio_input(False)
        await round_trip(session, peer)
    return seen


# ---------------------------------------------------------------------- odd PCM byte counts


async def test_a_turn_ending_on_half_a_sample_does_not_shift_the_next_turn() -> None:
    """The stray byte of turn 1 is dropped and reported once; turn 2 arrives sample-aligned."""
    first, second = bytes(range(1, 8)), bytes(range(0x40, 0x48))  # 7 bytes (3.5 samples), then 8
    with anyio.fail_after(5):
        async with running_peer() as peer:
            seen = await _turns(peer, MANUAL, [[first], [second]])
    sent = decoded_appends(peer)
    assert sent == [first[:6], second]  # before the fix: [first[:6], b"\x07" + second[:7]] (shifted)
    assert all(len(chunk) % 2 == 0 for chunk in sent)
    (report,) = errors(seen, "audio_misaligned")
    assert report.source == "local" and not report.fatal
    assert "1 byte" in report.message


async def test_half_samples_across_calls_are_joined_and_not_reported() -> None:
    """Odd pieces inside one turn are fine (a file read in odd blocks): only a turn's end must be whole."""
    pcm = bytes(i % 251 for i in range(6001))  # odd pieces, an even total
    pieces = [pcm[:1], pcm[1:2882], pcm[2882:5763], pcm[5763:], b"\x00"]
    with anyio.fail_after(5):
        async with running_peer() as peer:
            seen = await _turns(peer, MANUAL, [pieces])
    assert b"".join(decoded_appends(peer)) == pcm + b"\x00"
    assert errors(seen, "audio_misaligned") == []


async def test_each_misaligned_turn_is_reported_once_not_per_chunk() -> None:
    """Three turns of many odd chunks, each ending on a half sample: three reports, every append aligned."""
    turn = [bytes(2881)] * 5  # 14,405 bytes: five chunks' worth plus a stray byte
    with anyio.fail_after(5):
        async with running_peer() as peer:
            seen = await _turns(peer, MANUAL, [turn, turn, turn])
    assert len(errors(seen, "audio_misaligned")) == 3
    assert all(len(chunk) % 2 == 0 for chunk in decoded_appends(peer))
    assert sum(map(len, decoded_appends(peer))) == 3 * 14_404


async def test_a_pause_cuts_the_stream_and_drops_the_half_sample() -> None:
    """A stray byte before a pause must not be completed by the first byte after it."""
    with anyio.fail_after(5):
        async with running_peer() as peer:
            seen = await _turns(peer, MANUAL, [[b"\x01\x02\x03"], [b"\x10\x20"]], cut="pause")
    assert b"".join(decoded_appends(peer)) == b"\x01\x02\x10\x20"
    assert len(errors(seen, "audio_misaligned")) == 1


async def test_clear_discards_the_unsent_tail_with_the_turn() -> None:
    """Audio buffered but not yet sent belongs to the cleared turn: it never starts the next one."""
    with anyio.fail_after(5):
        async with running_peer() as peer:
            await _turns(peer, MANUAL, [[b"\x01\x02\x03"], [b"\x10\x20"]], cut="clear")
    assert b"".join(decoded_appends(peer)) == b"\x10\x20"


@pytest.mark.parametrize("kind", ["audio/pcmu", "audio/pcma"])
async def test_g711_has_one_byte_samples_and_no_stray_byte(kind: str) -> None:
    """G.711 samples are one byte: an odd turn is whole, kept in full, and not reported."""
    fmt = engine.AudioFormat(type=kind)
    config = engine.SessionConfig(turn_detection=None, input_format=fmt, output_format=fmt)
    with anyio.fail_after(5):
        async with running_peer() as peer:
            seen = await _turns(peer, config, [[b"\x01\x02\x03"], [b"\x04"]])
    assert decoded_appends(peer) == [b"\x01\x02\x03", b"\x04"]
    assert errors(seen, "audio_misaligned") == []


# ---------------------------------------------------------------------- wrong argument types


@pytest.mark.parametrize("value", [None, "", "pcm", 0, 123, [1, 2], object()])
async def test_send_audio_refuses_what_is_not_bytes(value: Any) -> None:
    """None, str and other types are a TypeError at the call, and nothing is sent."""
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer, MANUAL)
            async with session.connect():
                with pytest.raises(TypeError, match="send_audio"):
                    await session.send_audio(value)
                session.pause_audio_input(True)  # refused while paused too: a wrong call is wrong anyway
                with pytest.raises(TypeError, match="send_audio"):
                    await session.send_audio(value)
                session.pause_audio_input(False)
                await session.send_audio(bytearray(b"\x01\x02"))
                await session.send_audio(memoryview(b"\x03\x04"))
                await session.commit_audio()
                await round_trip(session, peer)
    assert decoded_appends(peer) == [b"\x01\x02\x03\x04"]


# ---------------------------------------------------------------------- text UTF-8 cannot carry (server)

LONE = "\ud83d"  # the high half of an emoji, alone: json.dumps writes it as the escape \ud83d


def _transcript_reply(peer: Peer, text: str) -> list[dict[str, Any]]:
    peer.responses += 1
    n = peer.responses
    return audio_response(f"resp_{n}", f"item_a{n}", text)


async def test_a_lone_surrogate_in_server_text_is_replaced_reported_and_the_call_goes_on() -> None:
    """The transcript arrives with U+FFFD, one invalid_text Error, no reconnect; the next turn works."""
    seen: list[Any] = []
    with anyio.fail_after(5):
        async with running_peer() as peer:
            texts = iter([f"smile {LONE} now", "plain answer"])
            peer.on("response.create")(lambda _: _transcript_reply(peer, next(texts)))
            session = make_session(peer)
            session.on()(seen.append)
            async with session.connect():
                for n in (1, 2):
                    await session.send_text(f"turn {n}")
                    await session.wait_for(ResponseDone, timeout=3)
                state = session.state
    finals = [e.text for e in seen if isinstance(e, AssistantTranscript) and e.final]
    assert finals == ["smile \ufffd now", "plain answer"]
    assert errors(seen, "invalid_text") and all(not e.fatal for e in errors(seen, "invalid_text"))
    assert len(peer.paths) == 1  # no reconnect
    assert state is engine.State.SESSION_READY


async def test_a_lone_surrogate_in_a_call_id_does_not_break_the_answer() -> None:
    """The tool runs; its output goes back under the repaired id, on the same socket."""
    seen: list[Any] = []
    with anyio.fail_after(5):
        async with running_peer() as peer:
            first = {"done": False}

            @peer.on("response.create")
            def answer(_: dict[str, Any]) -> list[dict[str, Any]]:
                if not first["done"]:
                    first["done"] = True
                    peer.responses += 1
                    return function_call_response("resp_1", [(f"call_{LONE}", "echo", '{"x": 1}')])
                return peer.next_audio_response()

            session = make_session(peer)
            session.on()(seen.append)

            @session.tool
            def echo(x: int) -> dict[str, int]:
                return {"x": x}

            async with session.connect():
                await session.send_text("call it")
                await session.wait_for(ToolResult, timeout=3)
                await session.wait_for(ResponseDone, timeout=3)
                await round_trip(session, peer)
    outputs = [
        m["item"]
        for m in peer.of_type("conversation.item.create")
        if m["item"]["type"] == "function_call_output"
    ]
    assert [o["call_id"] for o in outputs] == ["call_\ufffd"]
    assert len(peer.paths) == 1
    assert not [e for e in seen if isinstance(e, Error) and e.fatal]


# ---------------------------------------------------------------------- JSON nested too deep


@pytest.mark.parametrize("depth", [300, 900, 50_000])
async def test_deep_json_is_a_protocol_error_and_the_recording_survives(depth: int, tmp_path: Path) -> None:
    """Deep nesting (known or unknown event) is reported, clipped and recorded; the session goes on."""
    seen: list[Any] = []
    nested = "[" * depth + "]" * depth
    record = tmp_path / "call.jsonl"
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer, record=record)
            session.on()(seen.append)
            async with session.connect():
                assert peer.transport is not None
                for kind in ("conversation.created", "vendor.deep"):
                    await peer.transport.send('{"type":"' + kind + '","conversation":' + nested + "}")
                await session.send_text("still there?")
                await session.wait_for(ResponseDone, timeout=3)
    reports = errors(seen, "protocol_error")
    assert len(reports) == 2 and not any(e.fatal for e in reports)
    assert all(len(e.message) < 1_500 for e in reports)  # clipped
    lines = list(read_recording(record))
    recorded = [line for line in lines if (line.get("command") or {}).get("type") == "protocol_error"]
    assert len(recorded) == 2
    assert any(line.get("kind") == "client" for line in lines)  # the turn after it was recorded too
    assert len(peer.paths) == 1


# ---------------------------------------------------------------------- tool outcomes


class AsyncCallable:
    """A tool that is an object whose ``__call__`` is a coroutine function."""

    async def __call__(self, x: int) -> dict[str, Any]:
        await anyio.lowlevel.checkpoint()
        return {"ok": True, "x": x}


class Shown:
    def __str__(self) -> str:
        return "shown"


def _own_cancel() -> BaseException:
    """The running backend's cancellation exception, made by hand (nobody cancelled anything)."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.Cancelled._create()  # type: ignore[attr-defined]
    import asyncio

    return asyncio.CancelledError()


async def _async_raises_own_cancel(x: int) -> None:
    raise _own_cancel()


async def _async_returns_coroutine(x: int) -> Any:
    async def inner() -> dict[str, int]:
        return {"inner": x}

    return inner()


def _sync_returns_coroutine(x: int) -> Any:
    async def inner() -> dict[str, int]:
        return {"inner": x}

    return inner()


def _gen(x: int) -> Any:
    yield x


class OddBaseException(BaseException):
    """Neither an Exception nor an interrupt: a handler's odd choice."""


def _raise(make: Any) -> Any:
    def handler(x: int) -> None:
        raise make()

    return handler


BIG = 2 * 1024 * 1024

# (handler, is_error, what the output must decode to (None: anything), extra Error code reported)
TOOL_CASES: dict[str, tuple[Any, bool, Any, str | None]] = {
    "nan": (lambda x: float("nan"), True, None, None),
    "inf in a dict": (lambda x: {"x": float("inf")}, True, None, None),
    "async callable object": (AsyncCallable(), False, {"ok": True, "x": 1}, None),
    "raises its own cancellation": (_async_raises_own_cancel, True, None, None),
    "bytes": (lambda x: b"\x00\x01", True, None, None),
    "a set": (lambda x: {1, 2}, True, None, None),
    "an object with __str__": (lambda x: Shown(), True, None, None),
    "a generator": (_gen, True, None, None),
    "async returning a coroutine": (_async_returns_coroutine, False, {"inner": 1}, None),
    "sync returning a coroutine": (_sync_returns_coroutine, False, {"inner": 1}, None),
    "raises a BaseException subclass": (_raise(lambda: OddBaseException("odd")), True, None, None),
    "raises a message with a lone surrogate": (_raise(lambda: ValueError(f"bad {LONE}")), True, None, None),
    "a string with a lone surrogate": (lambda x: f"text {LONE}", False, None, "invalid_text"),
    "a dict with a lone surrogate": (lambda x: {"t": f"{LONE}!"}, False, {"t": "\ufffd!"}, "invalid_text"),
    "a 2 MiB string": (lambda x: "x" * BIG, True, None, "tool_output_too_large"),
    "a 2 MiB dict": (lambda x: {"rows": ["y" * 1024] * 2048}, True, None, "tool_output_too_large"),
    "None": (lambda x: None, False, None, None),
}


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("case", list(TOOL_CASES))
async def test_a_tools_outcome_is_exactly_one_valid_json_output(case: str) -> None:
    """Whatever the handler does, one strict-JSON, UTF-8-safe, small output goes back; the call goes on."""
    handler, is_error, expected, reported = TOOL_CASES[case]
    seen: list[Any] = []
    settings = engine.SessionSettings(close_timeout=0.5)
    with anyio.fail_after(5):
        async with running_peer() as peer:
            calls = iter([function_call_response("resp_1", [("call_1", "probe", '{"x": 1}')])])

            @peer.on("response.create")
            def answer(_: dict[str, Any]) -> list[dict[str, Any]]:
                peer.responses += 1
                return next(calls, None) or peer.next_audio_response()

            session = make_session(peer, settings=settings)
            session.add_tool(engine.Tool(name="probe", handler=handler, timeout=2))
            session.on()(seen.append)
            async with session.connect():
                await session.send_text("go")
                await session.wait_for(ToolResult, timeout=3)
                await session.wait_for(ResponseDone, timeout=3)
                await round_trip(session, peer)
                history = session.history
    outputs = [
        m["item"]
        for m in peer.of_type("conversation.item.create")
        if m["item"]["type"] == "function_call_output"
    ]
    (output,) = outputs
    value = _strict_json(output["output"]) if (is_error or expected is not None) else None
    if is_error:
        assert set(value) == {"error"}
    elif expected is not None:
        assert value == expected
    output["output"].encode("utf-8")
    assert len(output["output"]) < settings.max_item_bytes
    (result,) = [e for e in seen if isinstance(e, ToolResult)]
    assert result.is_error is is_error
    if reported:
        assert len(errors(seen, reported)) == 1
    assert not [e for e in seen if isinstance(e, Error) and e.fatal]
    assert len(peer.paths) == 1  # the session went on, on the same socket
    assert all(len(json.dumps(engine.protocol._wire.to_wire(i))) < settings.max_item_bytes for i in history)


# ---------------------------------------------------------------------- items the application adds


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("x" * (300 * 1024), "max_item_bytes"),
        ("\u00e9" * (140 * 1024), "max_item_bytes"),  # 140 Ki characters, 280 KiB of UTF-8
        (f"hello {LONE}", "lone surrogate"),
        ("\udc00", "lone surrogate"),
    ],
)
async def test_send_text_refuses_what_cannot_be_sent_before_anything_changes(text: str, match: str) -> None:
    """A ValueError at the call, nothing sent, the slot idle; the next valid text gets its answer."""
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)
            async with session.connect():
                await round_trip(session, peer)
                before = len(peer.received)
                with pytest.raises(ValueError, match=match):
                    await session.send_text(text)
                assert session.phase is engine.Phase.IDLE
                assert len(peer.received) == before
                await session.send_text("a fine question")
                await session.wait_for(ResponseDone, timeout=3)
    assert [i["item"]["content"][0]["text"] for i in peer.of_type("conversation.item.create")] == [
        "a fine question"
    ]


@pytest.mark.parametrize(
    "entry",
    [{"role": "user", "content": "x" * (300 * 1024)}, {"role": "assistant", "content": f"bad {LONE}"}],
)
def test_a_history_entry_that_cannot_be_sent_is_refused_at_construction(entry: dict[str, str]) -> None:
    """Seeded history is replayed by every restore: refused when the session is built."""
    provider = engine.Inworld(api_key="k", url="ws://127.0.0.1:9/session")
    with pytest.raises(ValueError, match="history entry 0"):
        engine.Session(provider, history=[entry])


HUGE_TEXT = "x" * (600 * 1024)  # instructions past the 512 KiB max_config_bytes


def test_a_configuration_too_big_to_send_is_refused_at_construction() -> None:
    """A session.update the server refuses for its size closes the socket, and a restore sends it again."""
    provider = engine.Inworld(api_key="k", url="ws://127.0.0.1:9/session")
    with pytest.raises(ValueError, match="max_config_bytes"):
        engine.Session(provider, engine.SessionConfig(instructions=HUGE_TEXT))
    settings = engine.SessionSettings(max_config_bytes=700 * 1024)
    engine.Session(provider, engine.SessionConfig(instructions=HUGE_TEXT), settings=settings)  # allowed


async def test_tools_that_make_the_configuration_too_big_are_refused_at_connect_before_dialling() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)
            schema = {"type": "object"}
            tool = engine.Tool(name="huge", description=HUGE_TEXT, parameters=schema, handler=dict)
            session.add_tool(tool)
            with pytest.raises(ValueError, match="with its tools"):
                async with session.connect():
                    pass
            assert peer.paths == []  # never dialled


async def test_update_refuses_a_configuration_too_big_to_send_and_the_session_goes_on() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)
            async with session.connect():
                await round_trip(session, peer)
                before = len(peer.received)
                with pytest.raises(ValueError, match="max_config_bytes"):
                    await session.update(engine.SessionConfig(instructions=HUGE_TEXT))
                assert len(peer.received) == before  # nothing sent
                assert session.config.instructions == "be brief"
                await session.send_text("still here?")
                await session.wait_for(ResponseDone, timeout=3)
    assert len(peer.paths) == 1


def _deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("value", [_deep(100_000), object(), {1, 2}], ids=["deep", "object", "set"])
def test_the_recorder_writes_a_marker_for_what_it_cannot_write(value: Any, tmp_path: Path) -> None:
    """A record that cannot be JSON never ends the session: a marker line stands in for it."""
    recorder = Recorder(tmp_path / "r.jsonl")
    recorder.write({"kind": "server", "t": 1.0, "event": {"type": "vendor.x", "value": value}})
    recorder.write({"kind": "client", "t": 2.0, "event": {"type": "response.create"}})
    recorder.close()
    first, second = read_recording(tmp_path / "r.jsonl")
    assert (first["kind"], first["of"], first["type"]) == ("unrecordable", "server", "vendor.x")
    assert second["kind"] == "client"
