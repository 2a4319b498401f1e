"""The running event loop's own clock and thread-safe scheduler, looked up once per session."""

from __future__ import annotations

from collections.abc import Callable

import sniffio


def loop_clock() -> Callable[[], float]:
    """The running loop's monotonic clock, looked up once (``anyio.current_time`` asks sniffio each call)."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.current_time
    import asyncio

    return asyncio.get_running_loop().time


def loop_caller() -> Callable[..., object]:
    """A thread-safe, non-blocking ``call_soon`` into the running loop (for audio threads)."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.lowlevel.current_trio_token().run_sync_soon
    import asyncio

    return asyncio.get_running_loop().call_soon_threadsafe
