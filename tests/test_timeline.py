"""Issue 14: the picture of a call, drawn from recordings of real sessions against the local server.

Each test records a call over a real socket (``Session(record=...)``), renders
it with the pure renderer and reads the SVG back with ``xml.etree``: the lanes
are there, and the spans' times, order and extents agree with each other and
with what the session saw (the speech that ended a turn starts the turn, the
cut part of an answer starts where the barge-in put the conversation in
``user_speaking``, the connection is down exactly while the conversation is
``reconnecting``). The pixels agree with the times. Text from the server or the
user is escaped, and a recording that is not one is refused with a clear error.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import anyio
import pytest

import engine
from engine import events as ev
from engine.cli import main
from engine.core.states import CORE_MACHINES
from engine.protocol.client import ConversationItemDelete, ConversationItemTruncate
from engine.record import read
from engine.server.faults import Faults
from engine.timeline import read_call, render
from engine.timeline.audio import AssistantAudio
from tests.e2e.helpers import SETTINGS, collect_until, inworld, make_server, next_event, play_all, speech
from tests.e2e.helpers import stream_audio as send_speech

ROOT = Path(engine.__file__).resolve().parent.parent
SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "</script><script>alert(1)</script> & <b>bold</b>"


def _turn_end(event: Any) -> bool:
    return isinstance(event, ev.TurnMetrics)


async def record_call(path: Path, *, text: str = "Hello there!") -> None:
    """A text turn, a voice turn whose question calls a tool, and a barge-in after 500 ms heard."""
    server = make_server()
    async with server.running():
        session = engine.Session(
            inworld(server), engine.SessionConfig(instructions="be brief"), settings=SETTINGS, record=path
        )

        @session.tool
        async def get_weather(city: str) -> dict[str, Any]:
            """Current weather.

            Args:
                city: the city.
            """
            await anyio.sleep(0.05)  # a tool that takes a while: the answer is done before it returns
            return {"city": city, "temp_c": 21}

        async with session.connect():
            stream = session.events()
            await session.send_text(text)
            play_all(session, await collect_until(stream, _turn_end))
            server.say_next("What's the weather in Paris?")
            await send_speech(session, speech(1.2))
            play_all(session, await collect_until(stream, _turn_end))
            await session.send_text("Tell me a long story about the sea and the lighthouse keepers.")
            long_turn = await collect_until(stream, _turn_end)
            (item_id,) = {e.item_id for e in long_turn if isinstance(e, ev.AudioOut)}
            assert item_id is not None
            session.audio_played(item_id, 500)
            server.say_next("Stop.")
            await send_speech(session, speech(0.8))
            await next_event(stream, ev.Interrupted)
            await collect_until(stream, _turn_end)


async def record_reconnect(path: Path) -> None:
    """A call whose socket drops at the first audio of the answer; the session reconnects."""
    server = make_server()
    server.inject(Faults(drop_at="response.output_audio.delta"), index=0)
    settings = engine.SessionSettings(
        close_timeout=0.5, reconnect=engine.ReconnectPolicy(initial_delay=0.01, jitter=0)
    )
    async with server.running():
        session = engine.Session(
            inworld(server), engine.SessionConfig(instructions="be brief"), settings=settings, record=path
        )
        async with session.connect():
            stream = session.events()
            await session.send_text("Hello there")
            await next_event(stream, ev.Reconnected)
            play_all(session, await collect_until(stream, _turn_end))


# ---------------------------------------------------------------------- reading the SVG back


def svg_of(page: str) -> ET.Element:
    """The page's SVG element, parsed as XML (it must be well-formed)."""
    start, end = page.index("<svg "), page.index("</svg>") + len("</svg>")
    return ET.fromstring(page[start:end])


def lanes(svg: ET.Element) -> dict[str, ET.Element]:
    """The lanes by name, in drawing order."""
    return {g.get("data-lane", ""): g for g in svg.iter(f"{SVG}g") if g.get("class") == "lane"}


def spans(lane: ET.Element) -> list[dict[str, Any]]:
    """A lane's spans: kind, label, times, details and the rectangle's x and width."""
    out = []
    for g in lane.iter(f"{SVG}g"):
        classes = (g.get("class") or "").split()
        if classes[:1] != ["span"]:
            continue
        rect = g.find(f"{SVG}rect")
        assert rect is not None
        out.append(
            {
                "kind": classes[1:],
                "label": g.get("data-label"),
                "start": float(g.get("data-start", "nan")),
                "end": float(g.get("data-end", "nan")),
                "detail": g.get("data-detail", ""),
                "x": float(rect.get("x", "nan")),
                "width": float(rect.get("width", "nan")),
            }
        )
    return sorted(out, key=lambda s: (s["start"], s["end"]))


def marks(lane: ET.Element) -> list[dict[str, Any]]:
    """A lane's marks: kind, time and details."""
    return [
        {
            "kind": (g.get("class") or "").split()[1:],
            "t": float(g.get("data-t", "nan")),
            "detail": g.get("data-detail"),
        }
        for g in lane.iter(f"{SVG}g")
        if (g.get("class") or "").startswith("mark")
    ]


def of_kind(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [s for s in items if kind in s["kind"]]


def check_geometry(svg: ET.Element) -> None:
    """Every rectangle sits where its times say, on one scale."""
    px, origin = float(svg.get("data-px-per-s", "0")), float(svg.get("data-origin", "0"))
    assert px > 0
    for lane in lanes(svg).values():
        for span in spans(lane):
            assert span["end"] >= span["start"], span
            assert span["x"] == pytest.approx(origin + span["start"] * px, abs=0.02)
            assert span["width"] == pytest.approx(max((span["end"] - span["start"]) * px, 1.5), abs=0.03)
            assert span["x"] + span["width"] <= float(svg.get("width", "0")), span  # inside the picture


def check_contiguous(items: list[dict[str, Any]]) -> None:
    """A machine is in one state at a time: each span starts where the previous ended."""
    assert items
    for before, after in itertools.pairwise(items):
        assert after["start"] == pytest.approx(before["end"], abs=1e-4), (before, after)


# ---------------------------------------------------------------------- the tests


@pytest.mark.anyio
async def test_a_call_with_text_voice_tool_and_barge_in_is_drawn_lane_by_lane(tmp_path: Path) -> None:
    path = tmp_path / "call.jsonl"
    with anyio.fail_after(20):
        await record_call(path)
    page = render(read(path))
    svg = svg_of(page)
    found = lanes(svg)
    machines = [f"machine:{name}" for name in CORE_MACHINES]  # every machine of the core, in its order
    assert machines[:2] == ["machine:conversation", "machine:response"]
    assert list(found) == [*machines, "user", "assistant", "tools", "connection", "errors", "turns"]
    check_geometry(svg)

    conversation = spans(found["machine:conversation"])
    check_contiguous(conversation)
    for machine in machines:
        check_contiguous(spans(found[machine]))
    states = [s["label"] for s in conversation]
    assert states[0] == "connecting" and "awaiting_tool" in states and "user_speaking" in states
    assert {s["label"] for s in spans(found["machine:response"])} >= {"idle", "requested", "generating"}

    # The user spoke twice (the question, then the barge-in), each transcript in its span.
    speech_spans = of_kind(spans(found["user"]), "speech")
    assert len(speech_spans) == 2
    assert "What's the weather in Paris?" in speech_spans[0]["detail"]
    assert "Stop." in speech_spans[1]["detail"]
    typed = of_kind(marks(found["user"]), "typed")
    assert next(m["detail"] for m in typed) == "typed: Hello there!"
    assert typed[0]["t"] < speech_spans[0]["start"] < typed[1]["t"] < speech_spans[1]["start"]

    # Each VAD turn starts where the user stopped speaking; turns follow each other.
    turns = of_kind(spans(found["turns"]), "turn")
    assert len(turns) == 4
    for before, after in itertools.pairwise(turns):
        assert before["end"] <= after["start"] + 1e-6
    assert turns[1]["start"] == pytest.approx(speech_spans[0]["end"], abs=1e-4)
    assert "tools" in turns[1]["detail"]
    for milestone in marks(found["turns"]):
        assert any(t["start"] - 1e-4 <= milestone["t"] <= t["end"] + 1e-4 for t in turns), milestone

    # The tool ran from its call to its answer, inside turn 2, and its answer ended awaiting_tool.
    (tool,) = spans(found["tools"])
    assert tool["label"] == "get_weather" and "Paris" in tool["detail"] and "temp_c" in tool["detail"]
    assert turns[1]["start"] <= tool["start"] <= tool["end"] <= turns[1]["end"]
    (waiting,) = [s for s in conversation if s["label"] == "awaiting_tool"]
    assert waiting["end"] == pytest.approx(tool["end"], abs=1e-4)

    # The answer cut by the barge-in: 500 ms heard, then the cut part from the moment of the cut,
    # which is when the conversation went to user_speaking the second time.
    audio = spans(found["assistant"])
    (cut,) = of_kind(audio, "cut")
    heard_before = [s for s in of_kind(audio, "heard") if s["end"] == pytest.approx(cut["start"], abs=1e-4)]
    assert len(heard_before) == 1 and "heard 500 ms" in heard_before[0]["detail"]
    assert cut["end"] > cut["start"]
    speaking = [s for s in conversation if s["label"] == "user_speaking"]
    assert speaking[-1]["start"] == pytest.approx(cut["start"], abs=1e-4)
    (barge_in,) = of_kind(marks(found["assistant"]), "barge-in")
    assert barge_in["t"] == pytest.approx(cut["start"], abs=1e-4)
    # The answers the test acknowledged were heard; the last one nobody acknowledged is only received.
    assert [s["kind"] for s in audio] == [["heard"], ["heard"], ["heard"], ["cut"], ["received"]]
    assert audio[-1]["label"] == "You said: Stop." and "not acknowledged" in audio[-1]["detail"]
    assert marks(found["errors"]) == []
    assert 'id="turn-table"' in page and "get_weather" in page
    # Self-contained: nothing is fetched (the only URL is the SVG namespace).
    assert re.findall(r"https?://[^\s\"']+", page) == ["http://www.w3.org/2000/svg"]
    assert not re.search(r"\s(src|href)=|@import|url\(", page)


@pytest.mark.anyio
async def test_a_reconnect_shows_the_connection_down_while_the_conversation_reconnects(
    tmp_path: Path,
) -> None:
    path = tmp_path / "drop.jsonl"
    with anyio.fail_after(20):
        await record_reconnect(path)
    call = read_call(read(path))
    svg = svg_of(render(read(path)))
    check_geometry(svg)
    found = lanes(svg)
    connection = spans(found["connection"])
    assert [s["kind"] for s in connection] == [["up"], ["down"], ["up"]]
    check_contiguous(connection)
    (reconnecting,) = [s for s in spans(found["machine:conversation"]) if s["label"] == "reconnecting"]
    down = connection[1]
    assert down["start"] == pytest.approx(reconnecting["start"], abs=1e-4)
    assert down["end"] <= reconnecting["end"] + 1e-4  # the socket opens, then the session is ready again
    assert [m["kind"] for m in marks(found["connection"])] == [["lost"], ["reconnect"]]
    assert any(t.metrics.reconnect_seconds is not None for t in call.turns)
    assert "· 1 reconnect ·" in render(read(path))


@pytest.mark.anyio
async def test_text_from_the_user_and_the_server_is_escaped(tmp_path: Path) -> None:
    path = tmp_path / "hostile.jsonl"
    with anyio.fail_after(20):
        await record_call(path, text=HOSTILE)
    records = list(read(path))
    # A server error whose message is markup, before the end of the call.
    error = {
        "type": "error",
        "event_id": "e1",
        "error": {"type": "server_error", "message": '<img src=x onerror="alert(2)">'},
    }
    close = next(i for i, r in enumerate(records) if (r.get("command") or {}).get("type") == "close")
    records.insert(close, {"kind": "server", "t": records[close]["t"], "event": error})
    page = render(records, title="<title>")

    assert page.count("<script") == 1  # only the page's own script
    assert "<img" not in page and "<b>" not in page and "<title><title>" not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    svg = svg_of(page)  # well-formed: every attribute and text node escaped
    found = lanes(svg)
    typed = of_kind(marks(found["user"]), "typed")
    assert typed[0]["detail"] == f"typed: {HOSTILE}"  # the text itself survives, as text
    (mark,) = marks(found["errors"])
    assert mark["detail"] is not None and '<img src=x onerror="alert(2)">' in mark["detail"]


@pytest.mark.anyio
async def test_a_recording_cut_short_and_a_machine_only_the_recording_shows(tmp_path: Path) -> None:
    path = tmp_path / "call.jsonl"
    with anyio.fail_after(20):
        await record_call(path)
    records = list(read(path))
    # A process that died mid-call leaves a recording that stops anywhere: here, mid-tool-call.
    (started,) = [i for i, r in enumerate(records) if (r.get("command") or {}).get("type") == "tool_result"]
    partial = records[:started]
    svg = svg_of(render(partial))
    check_geometry(svg)
    found = lanes(svg)
    (tool,) = spans(found["tools"])
    assert "unanswered" in tool["kind"] and "never answered" in tool["detail"]
    last = float(partial[-1]["t"]) - float(partial[0]["t"])
    assert tool["end"] == pytest.approx(last, abs=1e-5)
    for machine in CORE_MACHINES:  # every machine is drawn up to the last record
        assert spans(found[f"machine:{machine}"])[-1]["end"] == pytest.approx(last, abs=1e-5)

    # A machine the core does not run (the session's lifecycle, say) recorded as state records.
    t0 = float(records[0]["t"])
    extra = [
        {"kind": "state", "t": t0 + 0.001, "machine": "session_lifecycle", "old": "new", "new": "open"},
        {
            "kind": "state",
            "t": records[-1]["t"],
            "machine": "session_lifecycle",
            "old": "open",
            "new": "closed",
        },
    ]
    svg = svg_of(render([records[0], extra[0], *records[1:-1], extra[1], records[-1]]))
    found = lanes(svg)
    names = list(found)
    assert names.index("machine:session_lifecycle") == len(CORE_MACHINES)  # after the core's machines
    lifecycle = found["machine:session_lifecycle"]
    assert [s["label"] for s in spans(lifecycle)] == ["open"]
    assert spans(lifecycle)[0]["start"] == pytest.approx(0.001, abs=1e-5)


def test_an_item_deleted_unheard_is_cut_whole_and_a_truncated_one_at_what_was_heard() -> None:
    audio = AssistantAudio.for_config({"audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}}}})
    for item_id in ("heard-some", "never-heard"):  # 1000 ms each at 48 bytes per ms
        audio.server_event(1.0, {"type": "response.output_audio.delta", "item_id": item_id}, 48_000)
    audio.played(1.4, "heard-some", 300)
    audio.client_event(1.5, ConversationItemTruncate(item_id="heard-some", audio_end_ms=400))
    audio.client_event(1.5, ConversationItemDelete(item_id="never-heard"))
    drawn = [(s.label, s.kind, round(s.start, 3), round(s.end, 3)) for s in audio.spans(end=9.0)]
    assert drawn == [
        ("heard-some", "heard", 1.1, 1.5),  # started 300 ms before the acknowledgement that said 300 ms
        ("cut", "cut", 1.5, 2.1),  # the 600 ms that arrived and were never heard
        ("cut", "cut", 1.5, 2.5),  # all of it
    ]
    assert [m.t for m in audio.marks()] == [1.5, 1.5]


def _as_version_1(record: dict[str, Any]) -> dict[str, Any]:
    """A record as version 1 wrote it: a command as a call of the core's method by name."""
    if record["kind"] == "meta":
        return {**record, "version": 1}
    if record["kind"] != "command":
        return record
    fields = dict(record["command"])
    return {"kind": "call", "t": record["t"], "name": fields.pop("type"), **fields}


def test_a_version_1_recording_draws_the_same_picture(tmp_path: Path) -> None:
    path = tmp_path / "call.jsonl"
    anyio.run(record_call, path)  # one backend is enough: this checks the reading of the format
    records = list(read(path))
    old = [_as_version_1(r) for r in records]
    assert any(r["kind"] == "call" for r in old) and not any(r["kind"] == "command" for r in old)
    assert render(old) == render(records)


def test_a_recording_must_start_with_its_meta_record() -> None:
    with pytest.raises(ValueError, match="starts with a meta record"):
        render([{"kind": "call", "t": 1.0, "name": "close"}])
    with pytest.raises(ValueError, match="starts with a meta record"):
        render([])


# ---------------------------------------------------------------------- the command line


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_timeline_command_writes_the_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "call.jsonl"
    anyio.run(record_call, path)  # one backend is enough: this checks the command line
    done = _cli("timeline", str(path), "-o", str(tmp_path / "out.html"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"wrote {tmp_path / 'out.html'}\n"
    assert (tmp_path / "out.html").read_text(encoding="utf-8") == render(read(path), title="call.jsonl")

    assert main(["timeline", str(path)]) == 0  # by default, next to the recording
    assert (tmp_path / "call.html").is_file()
    assert capsys.readouterr().out == f"wrote {tmp_path / 'call.html'}\n"

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"kind": "call", "t": 0, "name": "close"}) + "\nnot json\n", encoding="utf-8")
    cases = (
        (bad, "starts with a meta record"),
        (tmp_path / "missing.jsonl", "No such file"),
        (tmp_path / "out.html", "not a JSON record"),
    )
    for target, words in cases:
        assert main(["timeline", str(target), "-o", str(tmp_path / "never.html")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"cannot draw {target}: ") and words in err, err
    assert not (tmp_path / "never.html").exists()


def test_the_demo_writes_its_timeline(tmp_path: Path) -> None:
    out = tmp_path / "demo.html"
    done = _cli("demo", "--pace", "0", "--timeline", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith(f"timeline: {out}")
    found = lanes(svg_of(out.read_text(encoding="utf-8")))
    assert len(of_kind(spans(found["turns"]), "turn")) == 4
    assert [s["label"] for s in spans(found["tools"])] == ["get_weather"]
    assert len(of_kind(spans(found["assistant"]), "cut")) == 1
