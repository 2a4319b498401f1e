"""Out-of-band answers: the session's side of ``Session.ask``.

The core sends the ask's ``response.create`` (``conversation: "none"``,
tagged in ``metadata``) and ends it with exactly one event naming its request
id (:mod:`engine.core.out_of_band`): ``OutOfBandDone`` or ``OutOfBandFailed``,
the latter also on its deadline and when the socket drops. This waits for that
event; the dispatcher ending the stream (the session closed) is ``SessionClosed``.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio.lowlevel

from engine.actors.dispatch import Dispatcher
from engine.actors.effects import Interpreter
from engine.core import events as ev
from engine.core.effects import Effect
from engine.errors import AskFailed, SessionClosed


async def answered(
    dispatcher: Dispatcher,
    effects: Interpreter,
    out: list[Effect],
    request_id: str,
    closed: Callable[[str], SessionClosed],
) -> ev.OutOfBandDone:
    """Apply an ask's effects, then wait for its answer (``AskFailed`` if it ends without one)."""
    async with dispatcher.stream((ev.OutOfBandDone, ev.OutOfBandFailed)) as answers:
        await anyio.lowlevel.checkpoint()
        await effects.apply(out)
        async for answer in answers:
            if answer.request_id != request_id:
                continue  # another ask's
            if isinstance(answer, ev.OutOfBandFailed):
                raise AskFailed(
                    f"the out-of-band request got no answer: {answer.message}",
                    code=answer.code,
                    request_id=request_id,
                )
            done: ev.OutOfBandDone = answer
            return done
    raise closed("the session closed before the out-of-band answer came")
