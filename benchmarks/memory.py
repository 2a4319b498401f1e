"""Memory: bytes per idle connected session, and growth over many turns on one session.

Both parts talk to the local server in its own process over 127.0.0.1, so this
process holds only the client side. Python allocations are counted with
``tracemalloc`` (after one warm-up connection, so lazily imported modules are
not counted); the resident set size is reported beside them.

* Idle: N sessions connected and ready, doing nothing; against N bare
  connections of the same WebSocket library that did the same handshake and
  keep a reader waiting, as the session does.
* Turns: one session, text turn after text turn (``send_text`` and the spoken
  answer, played back and acknowledged with ``audio_played``) with the server
  at ``pace=0``. The figure is the growth per turn over the second half of the
  turns (bounded structures, such as the capped history mirror, have filled by
  then); the first half and the top allocation sites are reported beside it.
"""

from __future__ import annotations

import gc
import os
import sys
import time
import tracemalloc
from typing import Any

import anyio

import engine
from benchmarks._apps import provider
from benchmarks._common import BOTH, KEY, Figure, rss_bytes
from benchmarks._server import Server, local_server
from benchmarks.calls import SESSION_UPDATE, SESSION_UPDATED

NAME = "memory"
BACKENDS = BOTH
TARGET_IDLE = 64 * 1024
TURN_TOLERANCE = 16
"""Bytes per turn below which growth counts as none (allocator noise)."""
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


async def engine_idle(url: str, ready: Any, stop: anyio.Event) -> None:
    """One connected, ready session that does nothing."""
    session = engine.Session(provider(url))
    async with session.connect():
        ready()
        await stop.wait()


async def bare_idle(url: str, ready: Any, stop: anyio.Event) -> None:
    """One bare connection of the backend's library, after the same handshake, reader waiting."""
    if _backend() == "trio":
        import trio_websocket

        headers = [(b"Authorization", f"Basic {KEY}".encode())]
        async with trio_websocket.open_websocket_url(
            url, extra_headers=headers, message_queue_size=16, max_message_size=16 * 1024 * 1024
        ) as tws:
            await _bare_session(tws.send_message, tws.get_message, ready, stop)
        return
    from websockets.asyncio.client import connect

    headers_ = {"Authorization": f"Basic {KEY}"}
    async with connect(
        url, additional_headers=headers_, compression=None, max_size=16 * 1024 * 1024, proxy=None
    ) as ws:
        await _bare_session(ws.send, ws.recv, ready, stop)


async def _bare_session(send: Any, receive: Any, ready: Any, stop: anyio.Event) -> None:
    await send(SESSION_UPDATE)
    while not str(await receive()).startswith(SESSION_UPDATED):
        pass
    ready()
    async with anyio.create_task_group() as tg:

        async def read() -> None:
            while True:
                await receive()

        tg.start_soon(read)
        await stop.wait()
        tg.cancel_scope.cancel()


def _backend() -> str:
    import sniffio

    return sniffio.current_async_library()


async def idle(kind: str, server: Server, sessions: int) -> dict[str, float]:
    """Bytes per connection for ``sessions`` idle connections of ``kind``."""
    hold = engine_idle if kind == "engine" else bare_idle
    await _connect_all(hold, server, 1, measure=False)  # warm-up: lazy imports, caches
    return await _connect_all(hold, server, sessions, measure=True)


async def _connect_all(hold: Any, server: Server, sessions: int, *, measure: bool) -> dict[str, float]:
    stop = anyio.Event()
    up = [0]
    all_up = anyio.Event()

    def ready() -> None:
        up[0] += 1
        if up[0] == sessions:
            all_up.set()

    gc.collect()
    traced0, rss0 = tracemalloc.get_traced_memory()[0], rss_bytes()
    async with anyio.create_task_group() as tg:
        for i in range(sessions):
            tg.start_soon(hold, server.url(), ready, stop)
            if i % 50 == 49:
                await anyio.sleep(0.05)  # let the server keep up with the handshakes
        with anyio.fail_after(180):
            await all_up.wait()
        await anyio.sleep(0.5)  # settle: every session idle
        gc.collect()
        traced1, rss1 = tracemalloc.get_traced_memory()[0], rss_bytes()
        stop.set()
    return {"traced_per_session": (traced1 - traced0) / sessions, "rss_per_session": (rss1 - rss0) / sessions}


async def turns(server: Server, count: int, warmup: int) -> dict[str, Any]:
    """Growth per turn over ``count`` text turns on one session, after ``warmup`` turns."""
    session = engine.Session(provider(server.url()))
    played: dict[str | None, float] = {}
    boxes = [anyio.Event()]

    def player(event: Any) -> None:
        # One subscriber for both, in order: once the turn's metrics arrive, its audio was played.
        if isinstance(event, engine.events.AudioOut) and event.item_id is not None:
            played[event.item_id] = played.get(event.item_id, 0.0) + event.duration_ms
            session.audio_played(event.item_id, played[event.item_id])
        elif isinstance(event, engine.events.TurnMetrics):
            played.clear()
            boxes[0].set()

    session.on(engine.events.AudioOut, engine.events.TurnMetrics)(player)

    async def turn(n: int) -> None:
        boxes[0] = anyio.Event()
        await session.send_text(f"Turn {n}: hello there.")
        with anyio.fail_after(30):
            await boxes[0].wait()

    async with session.connect():
        for n in range(warmup):
            await turn(n)
        half = count // 2
        gc.collect()
        traced0 = tracemalloc.get_traced_memory()[0]
        start = time.perf_counter()
        for n in range(half):
            await turn(warmup + n)
        gc.collect()
        before = tracemalloc.take_snapshot()
        traced1 = tracemalloc.get_traced_memory()[0]
        for n in range(half, count):
            await turn(warmup + n)
        seconds = time.perf_counter() - start
        gc.collect()
        traced2 = tracemalloc.get_traced_memory()[0]
        after = tracemalloc.take_snapshot()
        history = len(session.history)
    rest = count - half
    return {
        "bytes_per_turn_second_half": (traced2 - traced1) / rest,
        "bytes_per_turn_first_half": (traced1 - traced0) / half,
        "turns": count,
        "warmup_turns": warmup,
        "turns_per_s": count / seconds,
        "history_items_at_end": history,
        "top_growth_second_half": growth_sites(before, after, rest),
    }


def growth_sites(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, turns: int
) -> list[dict[str, Any]]:
    """The engine lines whose allocations grew the most between two snapshots, per turn."""
    keep = [tracemalloc.Filter(True, f"{ROOT}/engine/*")]
    diff = after.filter_traces(keep).compare_to(before.filter_traces(keep), "lineno")
    return [
        {
            "where": f"{os.path.relpath(s.traceback[0].filename, ROOT)}:{s.traceback[0].lineno}",
            "bytes_per_turn": s.size_diff / turns,
            "blocks": s.count_diff,
        }
        for s in diff[:8]
        if s.size_diff > 0
    ]


def _measure(backend: str, quick: bool) -> dict[str, Any]:
    sessions, turn_count = (50, 60) if quick else (1000, 1000)
    out: dict[str, Any] = {"sessions": sessions}
    with local_server(pace=1.0) as server:
        tracemalloc.start(1)
        for kind in ("engine", "bare"):
            out[kind] = anyio.run(idle, kind, server, sessions, backend=backend)
            print(f"memory idle {kind} {backend}: {out[kind]}", file=sys.stderr)
        tracemalloc.stop()
    with local_server(pace=0.0) as server:
        tracemalloc.start(1)
        out["turns"] = anyio.run(turns, server, turn_count, 20, backend=backend)
        tracemalloc.stop()
    return out


def run(backend: str, quick: bool) -> list[Figure]:
    """Bytes per idle session (engine and bare) and bytes of growth per turn."""
    m = _measure(backend, quick)
    eng, bare = m["engine"]["traced_per_session"], m["bare"]["traced_per_session"]
    growth = m["turns"]["bytes_per_turn_second_half"]
    return [
        Figure(
            benchmark=NAME,
            backend=backend,
            metric=f"bytes per idle session ({m['sessions']})",
            unit="B",
            engine=eng,
            floor=bare,
            ratio=eng / bare if bare else None,
            target="< 64 KiB",
            met=eng < TARGET_IDLE,
            extra={
                "rss_per_session": {
                    "engine": m["engine"]["rss_per_session"],
                    "bare": m["bare"]["rss_per_session"],
                }
            },
        ),
        Figure(
            benchmark=NAME,
            backend=backend,
            metric=f"growth per turn (turns {m['turns']['turns'] // 2}-{m['turns']['turns']})",
            unit="B/turn",
            engine=growth,
            target="no growth",
            met=growth <= TURN_TOLERANCE,
            extra=m["turns"],
        ),
    ]
