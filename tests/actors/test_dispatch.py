"""Dispatcher bookkeeping: a stream its consumer closed is forgotten, not published to forever."""

from __future__ import annotations

import gc
import warnings

import anyio
import pytest

from engine.actors.dispatch import Dispatcher
from engine.events import SpeechStarted

pytestmark = pytest.mark.anyio


async def test_a_closed_stream_is_forgotten_and_its_channel_released() -> None:
    dispatcher = Dispatcher(event_buffer=4)
    event = SpeechStarted(item_id="item_1", audio_start_ms=0)
    with warnings.catch_warnings(record=True) as caught, anyio.fail_after(5):
        warnings.simplefilter("always", ResourceWarning)
        kept = dispatcher.stream()
        for _ in range(50):
            async with dispatcher.stream():
                pass
        assert len(dispatcher._subscribers) == 1  # only the open stream is left
        dispatcher.publish(event)
        assert await kept.__anext__() is event
        dispatcher.close()
        assert [e async for e in kept] == []
        gc.collect()
    unclosed = [str(w.message) for w in caught if "Unclosed <MemoryObject" in str(w.message)]
    assert unclosed == []
