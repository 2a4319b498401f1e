"""The browser's wire protocol and the live view's fan-out, sans-IO (no event loop, no socket)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.core import events as ev
from engine.core.states import MACHINES, Phase, State
from engine.gateway import browser_protocol as bp
from engine.gateway.browser_diagram import edges, svg
from engine.gateway.watch import CallFeed, ViewTracker
from tests.core.test_purity import FORBIDDEN_MODULES, IMPURE_IMPORT, PACKAGE, _loaded_after


def test_the_codec_imports_no_io_and_reads_no_clock() -> None:
    loaded = _loaded_after("engine.gateway.browser_protocol", bare_package=True)
    assert sorted(loaded & (FORBIDDEN_MODULES | {"starlette", "hypercorn"})) == []
    source = Path(PACKAGE / "gateway" / "browser_protocol.py").read_text(encoding="utf-8")
    assert IMPURE_IMPORT.findall(source) == []


def test_page_frames_decode_to_typed_messages() -> None:
    assert bp.decode(b"\x01\x00\x02\x00") == bp.Audio(b"\x01\x00\x02\x00")
    assert bp.decode('{"type":"played","item_id":"item_1","ms":120.5}') == bp.Played("item_1", 120.5)
    assert bp.decode('{"type":"hangup"}') == bp.Hangup()


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"\x01\x00\x02", "audio of odd length 3"),
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"type":"dance"}', "unknown control type 'dance'"),
        ('{"type":"played","ms":3}', "played without an item_id string"),
        ('{"type":"played","item_id":"a","ms":-1}', "played without a finite ms >= 0"),
        ('{"type":"played","item_id":"a","ms":true}', "played without a finite ms >= 0"),
        ('{"type":"played","item_id":"a","ms":NaN}', "played without a finite ms >= 0"),
        ('{"type":"hangup","pad":"' + "x" * 5000 + '"}', "control frame of 5026 characters (at most 4096)"),
    ],
)
def test_unusable_frames_are_malformed_with_the_reason(frame: str | bytes, reason: str) -> None:
    message = bp.decode(frame)
    assert isinstance(message, bp.Malformed)
    assert message.reason.startswith(reason)
    assert len(message.raw) <= 120


def test_audio_frames_carry_their_item() -> None:
    frame = bp.audio_frame("item_é", b"\x10\x00\x20\x00")
    assert frame[0] == len("item_é".encode())
    assert bp.split_audio_frame(frame) == ("item_é", b"\x10\x00\x20\x00")
    with pytest.raises(ValueError, match="item id of 256 bytes"):
        bp.audio_frame("x" * 256, b"")


def test_control_frames_are_compact_json() -> None:
    assert json.loads(bp.control("flush", item_id="a")) == {"type": "flush", "item_id": "a"}
    assert json.loads(bp.control("hello", kind="browser")) == {"type": "hello", "kind": "browser"}


def test_the_played_ledger_only_grows_stays_within_what_was_sent_and_freezes_at_a_flush() -> None:
    ledger = bp.PlayedLedger()
    assert ledger.played(bp.Played("unknown", 10)) is None  # never sent
    ledger.sent("a", 100.0)
    assert ledger.played(bp.Played("a", 40.7)) == ("a", 40)
    assert ledger.played(bp.Played("a", 40.9)) is None  # nothing new
    assert ledger.played(bp.Played("a", 30)) is None  # positions only grow
    assert ledger.played(bp.Played("a", 150)) == ("a", 100)  # never beyond what was sent
    ledger.sent("b", 60.0)
    assert ledger.played(bp.Played("b", 20)) == ("b", 20)
    ledger.flush()
    ledger.sent("b", 60.0)  # late audio of a cut item is not counted
    assert ledger.played(bp.Played("b", 50)) is None
    assert ledger.played_ms("b") == 20
    assert ledger.ignored == 2


def test_events_in_words_for_the_live_view() -> None:
    change = ev.StateChanged(old=State.SESSION_READY, new=State.USER_SPEAKING)
    assert bp.event_view(change, 1.23456) == {
        "kind": "state",
        "machine": "conversation",
        "old": "session_ready",
        "new": "user_speaking",
        "t": 1.235,
    }
    call = bp.event_view(ev.ToolCall(call_id="c1", name="get_weather", arguments='{"city":"Paris"}'), 0)
    assert call is not None and call["arguments"] == '{"city":"Paris"}'
    metrics = bp.event_view(
        ev.TurnMetrics(turn=2, user_speech_ended=10.0, first_audio_received=10.25, response_done=11.5), 0
    )
    assert metrics == {
        "kind": "metrics",
        "turn": 2,
        "first_audio_ms": 250.0,
        "first_played_ms": None,
        "tools_ms": None,
        "total_ms": 1500.0,
        "t": 0,
    }
    assert bp.event_view(ev.AudioOut(pcm=b"", sample_rate=24000, item_id="a", response_id="r"), 0) is None


def test_the_tracker_reports_other_machines_when_they_move() -> None:
    tracker = ViewTracker({"conversation": "session_ready", "response": "idle"}, 0.0, lambda: 2.0)
    out = tracker.seen(
        ev.StateChanged(old=State.SESSION_READY, new=State.RESPONDING),
        {"conversation": "responding", "response": Phase.REQUESTED.value},
    )
    assert [(m["kind"], m.get("machine"), m.get("new")) for m in out] == [
        ("state", "conversation", "responding"),
        ("state", "response", "requested"),
    ]
    assert tracker.seen(ev.SpeechStarted(), {"conversation": "responding", "response": "requested"}) == []


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_slow_watcher_loses_the_oldest_then_gets_a_gap_with_the_states() -> None:
    feed = CallFeed("call-1", "browser", states={"conversation": "session_ready"}, clock=Clock(), queue=3)
    with feed.watch() as next_message:
        for i in range(5):
            feed.publish({"kind": "user", "text": str(i)})
        feed.close()
        got = []
        coroutine = next_message()
        # Nothing to wait for: each call completes synchronously.
        for _ in range(5):
            try:
                coroutine.send(None)
            except StopIteration as done:
                got.append(done.value)
            coroutine = next_message()
        coroutine.close()
    assert got[0] == {"kind": "gap", "dropped": 2, "states": {"conversation": "session_ready"}}
    assert [m["text"] for m in got[1:4]] == ["2", "3", "4"]  # the newest kept
    assert got[4] is None  # the call ended


def test_a_late_watcher_starts_from_the_history() -> None:
    feed = CallFeed("call-1", "twilio", clock=Clock(), history=2)
    for i in range(3):
        feed.publish({"kind": "user", "text": str(i)})
    with feed.watch() as next_message:
        coroutine = next_message()
        with pytest.raises(StopIteration) as first:
            coroutine.send(None)
    assert first.value.value == {"kind": "user", "text": "1"}


def test_the_diagram_draws_every_machine_of_the_registry_from_its_table() -> None:
    drawn = svg()
    for spec in MACHINES:
        assert f'<g class="machine" data-machine="{spec.name}"' in drawn
        for state in spec.states:
            assert f'data-machine="{spec.name}" data-state="{state.value}"' in drawn
        for (source, dest), labels in edges(spec.table).items():
            if source != dest:
                assert f'data-from="{source}" data-to="{dest}"' in drawn, (spec.name, source, dest, labels)
    conversation = edges(MACHINES[0].table)
    assert any("user_started" in label for label in conversation[("session_ready", "user_speaking")])


def test_without_chromium_browser_tests_skip_but_fail_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.browser as browser

    monkeypatch.setattr(browser, "CHROMIUM", Path("/nonexistent/chromium"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Chromium not found at /nonexistent/chromium"):
        browser.need_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="cannot run under CI=true: Chromium not found"):
        browser.need_chromium()
