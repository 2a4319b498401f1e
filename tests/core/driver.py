"""A synchronous driver for the pure core: feed wire JSON, read back effects by kind."""

from __future__ import annotations

import base64
import json
from typing import Any

from engine.core.conversation import Conversation, CoreOptions
from engine.core.effects import Effect, Emit, Send
from engine.protocol import SessionConfig, decode
from engine.protocol.codec import encode
from engine.protocol.items import Item


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Driver:
    """Wraps a Conversation; every server event goes through the real decoder."""

    def __init__(
        self,
        config: SessionConfig | None = None,
        *,
        history: tuple[Item, ...] = (),
        options: CoreOptions = CoreOptions(),
    ) -> None:
        self.clock = FakeClock()
        self.conv = Conversation(config or SessionConfig(), clock=self.clock, history=history, options=options)
        self.effects: list[Effect] = []

    def server(self, type_: str, **fields: Any) -> list[Effect]:
        """Feed one server event given as its wire fields."""
        text = json.dumps({"type": type_, **fields})
        out = self.conv.receive(decode(text))
        self.effects.extend(out)
        return out

    def do(self, effects: list[Effect]) -> list[Effect]:
        """Record the effects of a command."""
        self.effects.extend(effects)
        return effects

    def take(self) -> list[Effect]:
        """Everything since the last take."""
        out, self.effects = self.effects, []
        return out

    def ready(self) -> list[Effect]:
        """Run the handshake: session.created, then session.updated."""
        self.server("session.created", session={})
        self.server("session.updated", session={"type": "realtime"})
        return self.take()


def sent(effects: list[Effect]) -> list[dict[str, Any]]:
    """The client events among ``effects``, as the JSON the socket would carry."""
    return [json.loads(encode(e.event)) for e in effects if isinstance(e, Send)]


def sent_types(effects: list[Effect]) -> list[str]:
    """Types of the client events among ``effects``."""
    return [m["type"] for m in sent(effects)]


def emitted(effects: list[Effect]) -> list[Any]:
    """The user events among ``effects``."""
    return [e.event for e in effects if isinstance(e, Emit)]


def emitted_types(effects: list[Effect]) -> list[str]:
    """Class names of the user events among ``effects``."""
    return [type(e).__name__ for e in emitted(effects)]


def pcm_b64(n_bytes: int, value: int = 1) -> str:
    """Base64 of ``n_bytes`` of PCM."""
    return base64.b64encode(bytes([value]) * n_bytes).decode()
