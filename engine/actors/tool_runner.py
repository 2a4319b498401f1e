"""The tool runner: each call in its own task, with a deadline and a cancel policy.

Whatever happens, a started call is answered exactly once through ``answer``
(the session feeds it to the core, which refuses a second answer), with
exactly one output the server can take: the handler's result as strict JSON
(a ``str`` result is sent as it is), or an error output for an unknown tool,
bad arguments, an exception, a timeout, a result that is not JSON (``NaN``,
``bytes``, a set, a generator...), a result larger than ``max_output_bytes``
(it would be refused by the server and replayed by every restore), or a
cancel on barge-in. Text UTF-8 cannot carry (lone surrogates) is replaced by
U+FFFD. Oversized and repaired outputs are also reported to the application
(``Error`` ``tool_output_too_large`` / ``invalid_text``).

Handlers: a coroutine function, an object whose ``__call__`` is one, or a
sync callable (run in a worker thread); whatever they return that is
awaitable is awaited. A ``CancelledError`` (or trio's ``Cancelled``) the
handler raises by itself is a failure of that call; one that comes from a
cancel scope (the deadline, a barge-in, the session closing) is honoured.
``KeyboardInterrupt`` and ``SystemExit`` propagate. Only a cancel because the
session is closing goes unanswered (there is no socket left to answer on).
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import anyio.lowlevel

from engine.actors.group import Starter
from engine.core import events as ev
from engine.core.effects import StartTool
from engine.errors import ErrorCode, ErrorSource, clip, leaves
from engine.protocol.text import DEFAULT_MAX_ITEM_BYTES, has_surrogates, repair_text
from engine.tools import Tool

log = logging.getLogger(__name__)

Answer = Callable[[str, str, bool], Awaitable[None]]


def error_output(message: str) -> str:
    """The output the model gets for a failed call (always valid JSON, ASCII only, a few KiB at most)."""
    return json.dumps({"error": clip(message, 2_000)})


def _no_report(error: ev.Error) -> None:
    pass


_AWAIT_LIMIT = 8
"""Awaitables awaited in a row for one result (a coroutine returning a coroutine...)."""


class ToolRunner:
    """Runs tool calls for one session."""

    def __init__(
        self,
        tg: Starter,
        tools: Mapping[str, Tool],
        answer: Answer,
        *,
        max_pending: int = 64,
        max_output_bytes: int = DEFAULT_MAX_ITEM_BYTES,
        report: Callable[[ev.Error], None] = _no_report,
    ) -> None:
        self._tg = tg
        self._tools = tools
        self._answer = answer
        self._max = max_pending
        self._max_output = max_output_bytes
        self._report = report
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
                except BaseException as exc:
                    found = leaves(exc)
                    if any(isinstance(e, KeyboardInterrupt | SystemExit) for e in found):
                        raise
                    if any(isinstance(e, anyio.get_cancelled_exc_class()) for e in found):
                        # Ours (the deadline, a barge-in, the session closing) or the handler's own?
                        # If an enclosing scope was cancelled this raises again and the scopes take it.
                        await anyio.lowlevel.checkpoint_if_cancelled()
                        log.warning("tool %s raised a cancellation nobody asked for", tool.name)
                        return error_output(f"tool {tool.name!r} raised a cancellation by itself"), True
                    # An Exception (or an odd BaseException such as GeneratorExit): the call failed.
                    log.warning("tool %s raised %s", tool.name, type(exc).__name__, exc_info=True)
                    return error_output(f"{type(exc).__name__}: {exc}"), True
            if deadline.cancelled_caught:
                return error_output(f"tool {tool.name!r} timed out after {tool.timeout}s"), True
        if scope.cancelled_caught:
            return error_output(f"cancelled: {why[-1] if why else 'cancelled'}"), True
        return self._output(tool, call.call_id, result)

    def _output(self, tool: Tool, call_id: str, result: Any) -> tuple[str, bool]:
        """The one output for ``result``: strict JSON, UTF-8-safe and small enough to send."""
        if isinstance(result, str):
            output = result
        else:
            try:
                # allow_nan=False: NaN and Infinity are not JSON, and the server would refuse them.
                output = json.dumps(result, allow_nan=False, ensure_ascii=False)
            except (TypeError, ValueError, RecursionError) as exc:
                why = f"{type(exc).__name__}: {exc}"
                return error_output(f"tool {tool.name!r} returned a result that is not JSON: {why}"), True
        if has_surrogates(output):
            output = repair_text(output)
            self._report(
                ev.Error(
                    code=ErrorCode.INVALID_TEXT,
                    message=f"tool {tool.name!r} (call {call_id}) returned text with lone surrogates; "
                    "replaced by U+FFFD",
                    source=ErrorSource.TOOL,
                )
            )
        size = len(output.encode("utf-8"))
        if size > self._max_output:
            message = (
                f"tool {tool.name!r} returned {size} bytes, more than the {self._max_output} "
                "a tool output may have (SessionSettings.max_item_bytes)"
            )
            log.warning("%s (call %s): answered with an error output instead", message, call_id)
            self._report(
                ev.Error(code=ErrorCode.TOOL_OUTPUT_TOO_LARGE, message=message, source=ErrorSource.TOOL)
            )
            return error_output(f"{message}; the result was not sent"), True
        return output, False


def _boxed(handler: Callable[..., Any], args: dict[str, Any]) -> tuple[Any]:
    return (handler(**args),)


async def _call(tool: Tool, args: dict[str, Any]) -> Any:
    if tool.is_async:
        result = await tool.handler(**args)
    else:
        # Sync tools run in a worker thread so a slow one cannot stall the audio.
        # Boxed in a tuple: trio refuses a worker whose result is a coroutine (it is awaited below).
        boxed = await anyio.to_thread.run_sync(
            functools.partial(_boxed, tool.handler, args), abandon_on_cancel=True
        )
        result = boxed[0]
    # A sync function that returns a coroutine (or a coroutine that returns one) is awaited too.
    for _ in range(_AWAIT_LIMIT):
        if not inspect.isawaitable(result):
            return result
        result = await result
    raise TypeError(f"the result was still awaitable after {_AWAIT_LIMIT} awaits")
