"""Issue 16: per-call logs: every record emitted while serving a call names the call."""

from __future__ import annotations

import logging

import anyio
import pytest

from engine.observe import CallFilter, call_context, current_call
from engine.observe.logs import FORMAT

pytestmark = pytest.mark.anyio

log = logging.getLogger("engine.test_observe")


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(CallFilter())
        self.setFormatter(logging.Formatter(FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def _serve(call_id: str, started: anyio.Event, go: anyio.Event) -> None:
    with call_context(call_id, stream_sid=f"MZ-{call_id}"):
        async with anyio.create_task_group() as tg:  # child tasks inherit the call
            tg.start_soon(_child, call_id, started, go)


async def _child(call_id: str, started: anyio.Event, go: anyio.Event) -> None:
    started.set()
    await go.wait()  # both calls are live at once: their records interleave
    log.info("serving %s", call_id)


async def test_concurrent_calls_keep_their_own_ids_in_child_tasks() -> None:
    keep = Keep()
    log.addHandler(keep)
    log.setLevel(logging.DEBUG)
    try:
        with anyio.fail_after(5):
            go = anyio.Event()
            a, b = anyio.Event(), anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(_serve, "a", a, go)
                tg.start_soon(_serve, "b", b, go)
                await a.wait()
                await b.wait()
                log.info("outside any call")
                go.set()
    finally:
        log.removeHandler(keep)
    seen = {(r.getMessage(), r.call_id, r.carrier_ids) for r in keep.records}  # type: ignore[attr-defined]
    assert seen == {
        ("outside any call", "-", ""),
        ("serving a", "a", " stream_sid=MZ-a"),
        ("serving b", "b", " stream_sid=MZ-b"),
    }
    line = keep.format(next(r for r in keep.records if r.getMessage() == "serving a"))
    assert "[call=a stream_sid=MZ-a] serving a" in line
    assert current_call() == (None, {})
