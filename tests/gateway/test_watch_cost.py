"""The live view's feed costs a call nothing per audio chunk: it observes every session event but audio."""

from __future__ import annotations

from typing import Any

from engine.core import events as ev
from engine.gateway.watch import Feeds


class Recording:
    """A session stand-in that records what a feed subscribes to."""

    def __init__(self) -> None:
        self.types: tuple[type, ...] | None = None
        self.state = ev.State.SESSION_READY

    def on(self, *types: type) -> Any:
        self.types = types
        return lambda callback: callback


def test_a_feed_observes_every_session_event_but_audio() -> None:
    session = Recording()
    Feeds().open("call-1", "twilio", session)
    assert session.types is not None and session.types  # never "all events": that includes audio
    assert ev.AudioOut not in session.types
    for kind in (
        ev.StateChanged,
        ev.AssistantTranscript,
        ev.UserTranscript,
        ev.ToolCall,
        ev.ToolResult,
        ev.Interrupted,
        ev.TurnMetrics,
        ev.ResponseStarted,
        ev.ResponseDone,
        ev.Error,
        ev.Closed,
    ):
        assert kind in session.types, kind.__name__
