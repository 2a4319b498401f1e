"""The pure client core and the pure local-server core, joined by a synchronous link.

As h11's tests drive a client and a server against each other, :class:`Pair`
wires :class:`engine.core.conversation.Conversation` to
:class:`engine.server.session.ServerSession` with no event loop, no socket and
no real clock: every message crosses as the JSON text a socket would carry
(encoded and decoded by the real codec), time moves only when the test says,
and the client's effects are carried out the way the actors would (timers on
the shared clock, tools answered by plain functions, microphone audio held
while the gate is shut). ``deliver`` chooses which direction moves next, so a
property test can explore the interleavings a network allows.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from engine.core import events as ev
from engine.core.conversation import Conversation, CoreOptions
from engine.core.effects import (
    ArmTimer,
    CancelTimer,
    CancelTools,
    DropAudioOut,
    Effect,
    Emit,
    GateAudio,
    Send,
    StartTool,
)
from engine.errors import ProtocolError
from engine.protocol import SessionConfig, decode
from engine.protocol.codec import encode
from engine.protocol.items import Item
from engine.server.faults import Quirks
from engine.server.handshake import Dialect
from engine.server.session import ServerSession

RATE = 24000
CHUNK_MS = 60
Tool = Callable[[dict[str, Any]], object]


def tone(ms: int, amplitude: float = 0.5) -> bytes:
    """PCM16 mono speech stand-in: a 300 Hz sine the server's VAD hears as voice."""
    n = RATE * ms // 1000
    peak = amplitude * 32767
    return struct.pack(f"<{n}h", *(int(peak * math.sin(2 * math.pi * 300 * i / RATE)) for i in range(n)))


def silence(ms: int) -> bytes:
    """PCM16 mono silence."""
    return bytes(2 * (RATE * ms // 1000))


class Pair:
    """A client core and a server core over an in-memory link; see the module docstring."""

    def __init__(
        self,
        config: SessionConfig | None = None,
        *,
        options: CoreOptions | None = None,
        history: tuple[Item, ...] = (),
        tools: Mapping[str, Tool] | None = None,
        pace: float = 0.0,
        quirks: Quirks | None = None,
        server_session: Mapping[str, Any] | None = None,
        dialect: Dialect = "inworld",
        choose: Callable[[int], int] | None = None,
        tool_delay: float = 0.0,
    ) -> None:
        self.now = 0.0
        self.pace = pace
        self.quirks = quirks or Quirks()
        self.server_session = server_session
        self.dialect: Dialect = dialect  # whose endpoint the server plays
        self.client = Conversation(
            config or SessionConfig(),
            clock=lambda: self.now,
            history=history,
            options=options or CoreOptions(),
        )
        self.tools = dict(tools or {})
        self.tool_delay = tool_delay  # seconds a tool takes; 0 answers at once
        self.running_tools: list[tuple[float, StartTool]] = []
        self.choose = choose  # picks which non-empty direction moves next; None: to the server first
        self.connections = 0
        self.server = self._new_server()
        self.to_server: deque[str] = deque()
        self.to_client: deque[str] = deque()
        self.sent: list[dict[str, Any]] = []  # every client event, as wire JSON
        self.received: list[dict[str, Any]] = []  # every server event, as wire JSON
        self.emitted: list[Any] = []
        self.timers: dict[str, float] = {}
        self.gate = False
        self.held_audio: list[bytes] = []
        self.cancelled_tools: list[str] = []
        self.dropped_responses: list[str | None] = []

    def _new_server(self) -> ServerSession:
        self.connections += 1
        return ServerSession(
            now=self.now,
            index=self.connections,
            pace=self.pace,
            ping_interval=None,
            quirks=self.quirks,
            session=self.server_session,
            dialect=self.dialect,
        )

    # ------------------------------------------------------------ the link

    def connect(self) -> Pair:
        """Open the socket and run until the session is ready (or nothing moves)."""
        self.apply(self.client.connection_opened())
        self._to_client(self.server.open(self.now))
        self.settle()
        return self

    def drop(self) -> None:
        """The socket dies: what was in flight is lost; the next connect meets a fresh server."""
        self.to_server.clear()
        self.to_client.clear()
        self.apply(self.client.connection_lost())
        self.server = self._new_server()

    def _to_client(self, events: list[Any]) -> None:
        for event in events:
            text = encode(event)
            self.received.append(json.loads(text))
            self.to_client.append(text)

    def deliver(self) -> bool:
        """Move one message across; False when both directions are empty."""
        directions = [d for d, q in ((0, self.to_server), (1, self.to_client)) if q]
        if not directions:
            return False
        pick = 0 if self.choose is None or len(directions) == 1 else self.choose(len(directions))
        direction = directions[pick]
        if direction == 0:
            self._to_client(self.server.receive_text(self.to_server.popleft(), self.now))
        else:
            text = self.to_client.popleft()
            try:
                event = decode(text)
            except ProtocolError as exc:
                self.apply(self.client.protocol_error(str(exc)))
            else:
                self.apply(self.client.receive(event))
        return True

    def settle(self) -> None:
        """Deliver until both directions are empty."""
        for _ in range(100_000):
            if not self.deliver():
                return
        raise AssertionError("the pair never settled")

    def advance(self, seconds: float, step: float = 0.02) -> None:
        """Let time pass in steps: the server releases paced events, client timers fire."""
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now = min(end, self.now + step)
            self._to_client(self.server.poll(self.now))
            for name, due in sorted(self.timers.items(), key=lambda t: t[1]):
                if due <= self.now and self.timers.get(name) == due:
                    del self.timers[name]
                    self.apply(self.client.timer_fired(name))
            for due, call in list(self.running_tools):
                if due <= self.now and (due, call) in self.running_tools:
                    self.running_tools.remove((due, call))
                    self._answer(call)
            self.settle()

    def run_until_quiet(self, limit: float = 30.0) -> None:
        """Advance until the server has nothing scheduled and no client timer is armed."""
        waited = 0.0
        self.settle()
        while (
            self.server.next_deadline() is not None or self.timers or self.running_tools
        ) and waited < limit:
            self.advance(0.1)
            waited += 0.1

    # ------------------------------------------------------------ the client's effects

    def apply(self, effects: list[Effect]) -> None:
        """Carry out the client's effects as the actors would."""
        for effect in effects:
            if isinstance(effect, Send):
                text = encode(effect.event)
                self.sent.append(json.loads(text))
                self.to_server.append(text)
            elif isinstance(effect, Emit):
                self.emitted.append(effect.event)
            elif isinstance(effect, ArmTimer):
                self.timers[effect.name] = self.now + effect.delay
            elif isinstance(effect, CancelTimer):
                self.timers.pop(effect.name, None)
            elif isinstance(effect, GateAudio):
                self.gate = effect.open
                if self.gate:
                    held, self.held_audio = self.held_audio, []
                    for chunk in held:
                        self._append(chunk)
            elif isinstance(effect, StartTool):
                if self.tool_delay > 0:
                    self.running_tools.append((self.now + self.tool_delay, effect))
                else:
                    self._answer(effect)
            elif isinstance(effect, CancelTools):
                # As the tool runner does: a cancelled call is answered with an error output.
                self.cancelled_tools.extend(effect.call_ids)
                for due, call in list(self.running_tools):
                    if call.call_id in effect.call_ids:
                        self.running_tools.remove((due, call))
                        output = json.dumps({"error": f"cancelled: {effect.reason}"})
                        self.apply(self.client.tool_result(call.call_id, output, is_error=True))
            elif isinstance(effect, DropAudioOut):
                self.dropped_responses.append(effect.response_id)

    def _answer(self, call: StartTool) -> None:
        handler = self.tools.get(call.name)
        if handler is None:
            output = json.dumps({"error": f"unknown tool {call.name}"})
            self.apply(self.client.tool_result(call.call_id, output, is_error=True))
            return
        result = handler(json.loads(call.arguments or "{}"))
        self.apply(self.client.tool_result(call.call_id, json.dumps(result)))

    # ------------------------------------------------------------ the user

    def speak(self, pcm: bytes, step: float | None = None) -> None:
        """Stream microphone audio in 60 ms appends, in real time, as the audio-in actor does."""
        size = 2 * RATE * CHUNK_MS // 1000
        for start in range(0, len(pcm), size):
            chunk = pcm[start : start + size]
            if self.gate:
                self._append(chunk)
            else:
                self.held_audio.append(chunk)
            self.advance(step if step is not None else CHUNK_MS / 1000)

    def _append(self, chunk: bytes) -> None:
        text = json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk).decode()})
        self.sent.append({"type": "input_audio_buffer.append"})
        self.to_server.append(text)

    def command(self, effects: list[Effect]) -> None:
        """Carry out the effects of a client command, then let the link settle."""
        self.apply(effects)
        self.settle()

    # ------------------------------------------------------------ reading

    def events(self, cls: type[Any]) -> list[Any]:
        """The user events of one class, in order."""
        return [e for e in self.emitted if isinstance(e, cls)]

    def errors(self) -> list[ev.Error]:
        """Every Error the client reported."""
        return self.events(ev.Error)

    def sent_types(self) -> list[str]:
        """Types of the client events sent, appends left out."""
        return [m["type"] for m in self.sent if m["type"] != "input_audio_buffer.append"]

    def received_types(self) -> list[str]:
        """Types of the server events received."""
        return [m["type"] for m in self.received]

    def server_errors(self) -> list[dict[str, Any]]:
        """The ``error`` bodies the server sent."""
        return [m["error"] for m in self.received if m["type"] == "error"]

    def final_answers(self) -> list[str]:
        """The assistant's final transcripts, in order."""
        return [e.text for e in self.events(ev.AssistantTranscript) if e.final]
