"""Issue 6: record a real call, then replay it through a fresh core and get the same client events.

The call (against the local server, over a real socket) has a text turn, a
voice turn that calls a tool, and a barge-in truncating an answer to the
500 ms the speaker acknowledged. The recording must reproduce exactly the
client events the core sent (which are the wire messages minus the caller
audio, which does not go through the core), never contain the API key, and
keep audio out unless asked. ``python -m engine replay FILE --check`` is the
command-line form: exit 0 on a match, 1 once a recorded client event was edited.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

import engine
from engine import events as ev
from engine.record import read, replay
from engine.server.faults import Faults
from tests.e2e.helpers import (
    SETTINGS,
    Recorder,
    Wire,
    collect_until,
    inworld,
    make_server,
    next_event,
    play_all,
    speech,
    stream_audio,
    turn_done,
)

pytestmark = pytest.mark.anyio

ROOT = Path(engine.__file__).resolve().parent.parent
SECRET = "sk-e2e-RECORDING-7f3a9c1d5e0b2468"
AUDIO_DELTA = "response.output_audio.delta"
LONG_BASE64 = re.compile(r"^[A-Za-z0-9+/]{200,}={0,2}$")


def _turn_end(event: Any) -> bool:
    return isinstance(event, ev.TurnMetrics)


async def _recorded_call(path: Path, *, record_audio: bool = False) -> tuple[Wire, Recorder]:
    server = make_server()
    wire, recorder = Wire(), Recorder()
    async with server.running():
        session = engine.Session(
            inworld(server, key=SECRET),
            engine.SessionConfig(instructions="You are a travel assistant."),
            settings=SETTINGS,
            connector=wire,
            record=path,
            record_audio=record_audio,
        )
        session.on()(recorder)

        @session.tool
        async def get_weather(city: str) -> dict[str, Any]:
            """Current weather.

            Args:
                city: the city.
            """
            return {"city": city, "temp_c": 21}

        async with session.connect():
            stream = session.events()
            await session.send_text("Hello there!")
            play_all(session, await collect_until(stream, _turn_end))
            server.say_next("What's the weather in Paris?")
            await stream_audio(session, speech(1.2))
            play_all(session, await collect_until(stream, _turn_end))
            await session.send_text("Tell me a long story about the sea and the lighthouse keepers.")
            long_turn = await collect_until(stream, _turn_end)
            (item_id,) = {e.item_id for e in long_turn if isinstance(e, ev.AudioOut)}
            assert item_id is not None
            session.audio_played(item_id, 500)
            server.say_next("Stop.")
            await stream_audio(session, speech(0.8))
            await next_event(stream, ev.Interrupted)
            await collect_until(stream, _turn_end)
    return wire, recorder


def _audio_deltas(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["kind"] == "server" and r["event"]["type"] == AUDIO_DELTA]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _replay_cli(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", "replay", str(path), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_recording_replays_to_the_same_client_events(tmp_path: Path) -> None:
    path = tmp_path / "call.jsonl"
    with anyio.fail_after(20):
        wire, recorder = await _recorded_call(path)

    # The call itself went as planned: a tool call and a truncation to what was heard.
    assert [e.name for e in recorder.of_type(ev.ToolResult)] == ["get_weather"]
    assert [e.played_ms for e in recorder.of_type(ev.Interrupted)] == [500]

    result = replay(path)
    assert result.replayed, "the replay sent nothing"
    assert result.replayed == result.recorded, result.first_difference()
    assert result.matches
    assert result.timeline  # the state transitions, for reading a bug report
    # The recorded client events are what went out on the socket (caller audio aside).
    on_the_wire = [m for m in wire.sent() if m["type"] != "input_audio_buffer.append"]
    assert result.recorded == on_the_wire
    kinds = {m["type"] for m in result.recorded}
    assert {"session.update", "response.create", "conversation.item.truncate"} <= kinds
    outputs = [m for m in result.recorded if m.get("item", {}).get("type") == "function_call_output"]
    assert len(outputs) == 1


async def test_recording_holds_no_secret_and_no_audio(tmp_path: Path) -> None:
    path = tmp_path / "call.jsonl"
    with anyio.fail_after(20):
        await _recorded_call(path)

    text = path.read_text(encoding="utf-8")
    assert SECRET not in text
    assert SECRET[:12] not in text
    records = list(read(path))
    assert records[0]["kind"] == "meta"
    assert SECRET not in records[0]["url"]
    long_strings = [s for r in records for s in _strings(r) if LONG_BASE64.match(s)]
    assert long_strings == []
    deltas = _audio_deltas(records)
    assert deltas, "the call had assistant audio"
    assert all(r["event"]["delta"] == "" and r["audio_bytes"] > 0 for r in deltas)


async def test_recording_with_audio_keeps_it_and_still_replays(tmp_path: Path) -> None:
    path = tmp_path / "call.jsonl"
    with anyio.fail_after(20):
        await _recorded_call(path, record_audio=True)

    assert SECRET not in path.read_text(encoding="utf-8")
    records = list(read(path))
    deltas = _audio_deltas(records)
    assert deltas and all(LONG_BASE64.match(r["event"]["delta"]) for r in deltas)
    result = replay(path)
    assert result.replayed and result.matches, result.first_difference()


async def test_replay_command_checks_the_recording(tmp_path: Path) -> None:
    path = tmp_path / "call.jsonl"
    with anyio.fail_after(20):
        await _recorded_call(path)

    ok = _replay_cli(path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "exactly the recorded client events" in ok.stdout

    # Edit one recorded client event: the replay no longer matches, and --check says so.
    lines = path.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        record = json.loads(line)
        if record["kind"] == "client" and record["event"]["type"] == "conversation.item.truncate":
            record["event"]["audio_end_ms"] += 1
            lines[index] = json.dumps(record)
            break
    else:
        pytest.fail("the recording has no truncate to edit")
    edited = tmp_path / "edited.jsonl"
    edited.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert not replay(edited).matches
    bad = _replay_cli(edited)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "MISMATCH" in bad.stdout


async def test_recording_across_a_reconnect_replays(tmp_path: Path) -> None:
    """A drop mid-response, the restore on a new socket, a tool turn after it: still exact."""
    path = tmp_path / "call.jsonl"
    server = make_server()
    server.inject(Faults(drop_at="response.output_audio.delta"), index=0)
    settings = engine.SessionSettings(close_timeout=0.5, reconnect=engine.ReconnectPolicy(initial_delay=0.01))
    with anyio.fail_after(20):
        async with server.running():
            session = engine.Session(inworld(server, key=SECRET), settings=settings, record=path)

            @session.tool
            async def get_weather(city: str) -> dict[str, Any]:
                """Current weather.

                Args:
                    city: the city.
                """
                return {"city": city, "temp_c": 21}

            async with session.connect():
                stream = session.events()
                await session.send_text("Hello there!")
                await next_event(stream, ev.Reconnected)
                await turn_done(stream)
                await session.send_text("What's the weather in Paris?")
                await turn_done(stream)

    assert len(server.connections) == 2
    records = list(read(path))
    commands = [r["command"]["type"] for r in records if r["kind"] == "command"]
    assert commands.count("connection_lost") == 1
    result = replay(path)
    assert result.replayed and result.matches, result.first_difference()
    assert [m["type"] for m in result.recorded].count("session.update") == 2  # one per socket
    assert SECRET not in path.read_text(encoding="utf-8")
