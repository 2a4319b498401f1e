"""The out-of-band ``response.create`` (``ask``) is GA, strictly, against the ``openai`` package's types."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.realtime import RealtimeClientEvent, ResponseCreateEvent

from engine.core import commands as cmd
from engine.protocol import client as c
from engine.protocol import encode
from tests.protocol.ga_oracle import assert_ga_valid


def _wire(command: cmd.Ask) -> dict[str, Any]:
    event = c.ResponseCreate(response=command.params("ask_e7"), event_id="evt_ask_e8")
    data: dict[str, Any] = json.loads(encode(event))
    return data


@pytest.mark.parametrize(
    "command",
    [
        cmd.Ask(prompt="Summarise the call."),
        cmd.Ask(prompt="Summarise the call.", instructions="Be brief."),
        cmd.Ask(prompt="Translate: bonjour", context="none"),
        cmd.Ask(prompt="Translate: bonjour", instructions="Answer in English.", context="none"),
    ],
)
def test_the_ask_is_a_strict_ga_response_create(command: cmd.Ask) -> None:
    payload = _wire(command)
    model = assert_ga_valid(payload, RealtimeClientEvent, allowed_extras=())
    assert isinstance(model, ResponseCreateEvent) and model.response is not None
    assert model.response.conversation == "none"
    assert model.response.metadata == {"engine_oob": "ask_e7"}
    assert model.response.output_modalities == ["text"]
    assert (model.response.input is None) is (command.context == "conversation")
