"""Commands into the core are values with one entry point, so recording needs no proxy."""

from __future__ import annotations

import inspect
import json
from typing import Any

import attrs
import pytest

from engine.core import commands as cmd
from engine.core.conversation import Conversation
from engine.core.effects import Effect, Send
from engine.protocol import SessionConfig
from engine.protocol.client import ResponseParams
from engine.protocol.items import Item
from engine.record import Recorder, read, record, replay
from tests.core.driver import Driver, sent

SAMPLES: list[cmd.Command] = [
    cmd.ConnectionOpened(),
    cmd.ConnectionLost(),
    cmd.Close(),
    cmd.ProtocolFault(message="bad frame", code="protocol_error"),
    cmd.SendText(text="Hello"),
    cmd.AddItem(item=Item.user_text("Hi", id="item_1")),
    cmd.CreateResponse(params=ResponseParams(instructions="Be brief.")),
    cmd.CreateResponse(),
    cmd.CancelResponse(),
    cmd.Interrupt(),
    cmd.CommitAudio(),
    cmd.ClearAudio(),
    cmd.Update(config=SessionConfig(instructions="Terse.")),
    cmd.Ask(prompt="Summarise the call.", instructions="Terse.", context="none", timeout=5.0),
    cmd.ToolOutput(call_id="call_1", output='"sunny"', is_error=True),
    cmd.AudioPlayed(item_id="item_a1", ms=120.5),
    cmd.TimerFired(name="response_created"),
]


def test_every_command_has_a_sample_and_a_convenience_method_with_its_fields() -> None:
    """A command's TYPE names the method that builds it, and its fields are that method's parameters."""
    assert {type(c) for c in SAMPLES} == set(cmd.COMMAND_TYPES)
    for cls in cmd.COMMAND_TYPES:
        method = getattr(Conversation, cls.TYPE)
        parameters = list(inspect.signature(method).parameters)[1:]
        assert parameters == [f.name for f in attrs.fields(cls)], cls.TYPE


@pytest.mark.parametrize("command", SAMPLES, ids=lambda c: type(c).__name__)
def test_a_command_survives_its_record_form(command: cmd.Command) -> None:
    data = json.loads(json.dumps(cmd.to_record(command)))
    assert data["type"] == command.TYPE
    assert cmd.from_record(data) == command


def test_an_unknown_record_and_a_non_command_are_refused() -> None:
    with pytest.raises(ValueError, match="not a core command"):
        cmd.from_record({"type": "format_disk"})
    with pytest.raises(TypeError, match="not a core command: str"):
        Driver().conv.handle("send_text")  # type: ignore[arg-type]


def test_a_bad_argument_is_refused_when_the_command_is_built() -> None:
    with pytest.raises(TypeError, match=r"send_text\(\): text must be a str, got int"):
        cmd.SendText(text=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"audio_played\(\): ms must be finite"):
        cmd.AudioPlayed(item_id="item_1", ms=float("nan"))


def test_handle_and_the_convenience_method_do_the_same() -> None:
    a, b = Driver(), Driver()
    a.ready()
    b.ready()
    assert a.conv.handle(cmd.SendText(text="Hi")) == b.conv.send_text("Hi")
    assert a.where == b.where


def test_the_observer_sees_every_input_with_its_effects() -> None:
    d = Driver()
    seen: list[tuple[Any, list[Effect]]] = []
    d.conv.observer = lambda received, effects: seen.append((received, effects))
    d.ready()
    out = d.do(d.conv.send_text("Hi"))
    assert [type(r).__name__ for r, _ in seen[-1:]] == ["SendText"]
    assert seen[-1][1] == out and any(isinstance(e, Send) for e in out)
    assert any(type(r).__name__ == "SessionUpdated" for r, _ in seen)


def test_a_recorded_core_replays_from_command_records(tmp_path: Any) -> None:
    path = tmp_path / "call.jsonl"
    d = Driver()
    recorder = Recorder(path)
    record(d.conv, recorder, d.clock, provider="test")
    d.ready()
    d.do(d.conv.send_text("Hi"))
    d.clock.now = 11.0
    d.do(d.conv.timer_fired("response_created"))
    recorder.close()
    lines = list(read(path))
    assert [line["command"]["type"] for line in lines if line["kind"] == "command"] == [
        "send_text",
        "timer_fired",
    ]
    result = replay(path)
    assert result.matches and [m["type"] for m in result.replayed][-1] == "response.create"
    assert sent(d.effects)[-1]["type"] == "response.create"


def test_a_version_1_recording_with_call_records_still_replays(tmp_path: Any) -> None:
    path = tmp_path / "old.jsonl"
    conv = Driver().conv
    meta = {"kind": "meta", "version": 1, "t": 0.0, "config": conv.config.to_wire(), "options": {}}
    records = [
        meta,
        {"kind": "call", "t": 0.0, "name": "connection_opened"},
        {"kind": "server", "t": 0.1, "event": {"type": "session.created", "session": {}}},
        {"kind": "call", "t": 0.2, "name": "timer_fired", "args": ["retry_response"]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    result = replay(path)
    assert [m["type"] for m in result.replayed] == ["session.update"]
