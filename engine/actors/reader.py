"""The socket reader: every frame decoded, fed to the core, and its effects applied.

It runs inside the supervisor's socket task and returns when the socket ends,
with the reason. Frames that are not text or not valid JSON are reported to
the core (a non-fatal ``Error``) and reading goes on; text UTF-8 cannot carry
is repaired, reported and then fed. Audio and transcript deltas, the bulk of
the traffic, are published without entering a coroutine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.actors.effects import Interpreter
from engine.core import commands as cmd
from engine.core import effects as fx
from engine.core import events as ev
from engine.core.conversation import Conversation
from engine.errors import ConnectionClosed, ProtocolError, TransportError
from engine.protocol.codec import RepairedMessage, decode
from engine.transports.base import Transport

_STREAMED = frozenset({ev.AudioOut, ev.AssistantTranscript, ev.AssistantText, ev.UserTranscript})


async def read_socket(
    transport: Transport, conv: Conversation, effects: Interpreter, publish: Callable[[Any], None]
) -> ConnectionClosed | TransportError:
    """Read ``transport`` until it ends; return why it ended."""
    # Bound once: this loop runs for every server message.
    receive, feed, handle, apply, emit = transport.receive, conv.receive, conv.handle, effects.apply, fx.Emit
    streamed = _STREAMED if effects.policies is None else frozenset()  # call policies count the audio
    while True:
        try:
            text = await receive()
        except ProtocolError as exc:  # a frame that is not text (BinaryFrameError): report, read on
            await apply(handle(cmd.ProtocolFault(message=str(exc), code=exc.code)))
            continue
        except (ConnectionClosed, TransportError) as exc:
            return exc
        try:
            event = decode(text)
        except RepairedMessage as exc:  # text UTF-8 cannot carry was replaced: report, then go on
            out = handle(cmd.ProtocolFault(message=str(exc), code=exc.code)) + feed(exc.event)
        except ProtocolError as exc:
            out = handle(cmd.ProtocolFault(message=str(exc)))
        else:
            out = feed(event)
        if not out:
            continue
        if len(out) == 1 and type(first := out[0]) is emit and type(first.event) in streamed:
            publish(first.event)
        else:
            await apply(out)
        # Drop the last message before waiting: an idle session must not hold it (memory).
        text = event = out = first = None  # type: ignore[assignment]
