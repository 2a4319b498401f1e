"""Generated decoders: slots filled directly only where that equals running ``__init__``."""

from __future__ import annotations

import attrs
import pytest

from engine.protocol import SERVER_EVENTS, ConfigError
from engine.protocol._wire import _slot_setters, from_wire
from engine.protocol.config import AudioFormat, FunctionTool, ServerVad


@pytest.mark.parametrize("cls", sorted(SERVER_EVENTS.values(), key=lambda c: c.TYPE), ids=lambda c: c.TYPE)
def test_every_server_event_decodes_with_every_field_set(cls: type) -> None:
    event = from_wire(cls, {"type": cls.TYPE})
    # A slot left unset would raise here; the defaults are the class's own.
    values = {f.name: getattr(event, f.name) for f in attrs.fields(cls)}
    assert event == cls(**{f.name: values[f.name] for f in attrs.fields(cls) if f.init})


def test_plain_events_skip_init_and_validated_classes_do_not() -> None:
    assert _slot_setters(SERVER_EVENTS["response.output_audio.delta"]) is not None
    assert _slot_setters(ServerVad) is None  # validators must run
    assert _slot_setters(AudioFormat) is None  # a default computed from another field


def test_validators_still_run_when_decoding() -> None:
    with pytest.raises(ConfigError, match="threshold"):
        from_wire(ServerVad, {"type": "server_vad", "threshold": 5.0})


def test_defaults_that_need_the_instance_come_from_init() -> None:
    assert from_wire(AudioFormat, {"type": "audio/pcmu"}).rate == 8000
    assert from_wire(AudioFormat, {}).rate == 24000
    assert from_wire(AudioFormat, {"type": "audio/pcm", "rate": 16000}).rate == 16000


def test_factory_defaults_are_fresh_per_object() -> None:
    a = from_wire(FunctionTool, {"name": "a"})
    b = from_wire(FunctionTool, {"name": "b"})
    assert a.parameters == b.parameters
    assert a.parameters is not b.parameters  # a shared mutable default would leak between tools
