"""The tool runner: each call in its own task, with a deadline and a cancel policy.

Whatever happens, a started call is answered exactly once through ``answer``
(the session feeds it to the core, which refuses a second answer): the
handler's JSON result, or an error output for an unknown tool, bad arguments,
an exception, a timeout, a result that is not JSON, or a cancel on barge-in.
Only a cancel because the session is closing goes unanswered (there is no
socket left to answer on).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from engine.actors.group import Starter
from engine.core.effects import StartTool
from engine.tools import Tool

log = logging.getLogger(__name__)

Answer = Callable[[str, str, bool], Awaitable[None]]


def error_output(message: str) -> str:
    """The output the model gets for a failed call."""
    return json.dumps({"error": message})


class ToolRunner:
    """Runs tool calls for one session."""

    def __init__(
        self, tg: Starter, tools: Mapping[str, Tool], answer: Answer, *, max_pending: int = 64
    ) -> None:
        self._tg = tg
        self._tools = tools
        self._answer = answer
        self._max = max_pending
        self._closed = False
        self._running: dict[str, tuple[anyio.CancelScope, Tool | None, list[str]]] = {}

    def start(self, call: StartTool) -> bool:
        """Start a call in its own task; False when closing or ``max_pending`` calls run already."""
        if self._closed or len(self._running) >= self._max:
            log.error("cannot run tool call %s now: too many running or closing", call.call_id)
            return False
        entry: tuple[anyio.CancelScope, Tool | None, list[str]] = (
            anyio.CancelScope(),
            self._tools.get(call.name),
            [],
        )
        self._running[call.call_id] = entry
        self._tg.start_soon(self._run_call, call, entry, name=f"tool {call.name} {call.call_id}")
        return True

    def cancel(self, call_ids: tuple[str, ...], reason: str) -> None:
        """Cancel calls whose tool allows it (``closed`` cancels every call)."""
        for call_id in call_ids:
            entry = self._running.get(call_id)
            if entry is None:
                continue
            scope, tool, why = entry
            if reason == "closed" or tool is None or tool.cancel_on_interrupt:
                why.append(reason)
                scope.cancel()

    def running(self) -> tuple[str, ...]:
        """Ids of calls in progress."""
        return tuple(self._running)

    def close(self) -> None:
        """Accept no more calls."""
        self._closed = True

    async def _run_call(
        self, call: StartTool, entry: tuple[anyio.CancelScope, Tool | None, list[str]]
    ) -> None:
        scope, tool, why = entry
        try:
            output, is_error = await self._execute(call, tool, scope, why)
        finally:
            self._running.pop(call.call_id, None)
        if "closed" in why:
            return
        await self._answer(call.call_id, output, is_error)

    async def _execute(
        self, call: StartTool, tool: Tool | None, scope: anyio.CancelScope, why: list[str]
    ) -> tuple[str, bool]:
        if tool is None:
            return error_output(f"unknown tool {call.name!r}"), True
        try:
            args = json.loads(call.arguments) if call.arguments.strip() else {}
        except ValueError as exc:
            return error_output(f"arguments are not valid JSON: {exc}"), True
        if not isinstance(args, dict):
            return error_output("arguments must be a JSON object"), True
        result: Any = None
        with scope:
            with anyio.move_on_after(tool.timeout) as deadline:
                try:
                    result = await _call(tool, args)
                except Exception as exc:
                    log.warning("tool %s raised %s", tool.name, type(exc).__name__, exc_info=True)
                    return error_output(f"{type(exc).__name__}: {exc}"), True
            if deadline.cancelled_caught:
                return error_output(f"tool {tool.name!r} timed out after {tool.timeout}s"), True
        if scope.cancelled_caught:
            return error_output(f"cancelled: {why[-1] if why else 'cancelled'}"), True
        if isinstance(result, str):
            return result, False
        try:
            return json.dumps(result), False
        except (TypeError, ValueError) as exc:
            return error_output(f"tool {tool.name!r} returned a result that is not JSON: {exc}"), True


async def _call(tool: Tool, args: dict[str, Any]) -> Any:
    if tool.is_async:
        return await tool.handler(**args)
    # Sync tools run in a worker thread so a slow one cannot stall the audio.
    return await anyio.to_thread.run_sync(functools.partial(tool.handler, **args), abandon_on_cancel=True)
