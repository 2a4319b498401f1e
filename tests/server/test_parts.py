"""The server's pure parts on their own: VAD, assistant rules, handshake rules, config, faults."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.protocol.config import ConfigError
from engine.protocol.items import ContentPart, Item
from engine.server import Faults, LocalServer, Replay
from engine.server.assistant import Call, Say, build_arguments, decide, tool_matches
from engine.server.audio import InputDecoder, pcm16_to_samples, voice_chunk
from engine.server.handshake import check_request
from engine.server.session_config import default_session
from engine.server.vad import EnergyVad, SpeechStart, SpeechStop
from tests.server.helpers import silence, tone

# -- voice activity --------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 44100, 48000])
def test_vad_dates_speech_to_the_frame_at_every_rate(rate: int) -> None:
    vad = EnergyVad(rate)
    events = vad.feed(pcm16_to_samples(silence(700, rate) + tone(900, rate=rate) + silence(600, rate)))
    assert len(events) == 2
    start, stop = events
    assert isinstance(start, SpeechStart) and isinstance(stop, SpeechStop)
    assert abs(start.start_ms - 700) <= 20 and abs(stop.end_ms - 1600) <= 20
    assert stop.level > 0.3
    assert vad.position_ms == pytest.approx(2200, abs=1)


def test_vad_ignores_clicks_and_bridges_short_pauses() -> None:
    vad = EnergyVad(24000, silence_ms=500)
    audio = silence(300) + tone(40) + silence(600)  # 40 ms: too short to be speech
    audio += tone(400) + silence(300) + tone(400) + silence(600)  # one utterance with a pause
    events = vad.feed(pcm16_to_samples(audio))
    assert [type(e) for e in events] == [SpeechStart, SpeechStop]
    assert abs(events[0].start_ms - 940) <= 20
    assert isinstance(events[1], SpeechStop) and abs(events[1].end_ms - 2040) <= 20


def test_vad_is_independent_of_how_audio_is_chunked() -> None:
    audio = silence(500) + tone(600, amplitude=0.2) + silence(700)
    whole = EnergyVad(16000).feed(pcm16_to_samples(audio))
    decoder, vad = InputDecoder("audio/pcm"), EnergyVad(16000)
    pieces = []
    for i in range(0, len(audio), 333):  # odd sizes: PCM bytes split mid-sample
        pieces += vad.feed(decoder.decode(audio[i : i + 333]))
    assert pieces == whole


def test_quiet_noise_is_not_speech() -> None:
    vad = EnergyVad(24000)
    assert vad.feed(pcm16_to_samples(tone(2000, amplitude=0.005))) == []


def test_synthetic_voice_is_quiet_and_sized_per_format() -> None:
    import base64

    pcm = base64.b64decode(voice_chunk("audio/pcm", 24000))
    assert len(pcm) == 2880
    assert EnergyVad(24000).feed(pcm16_to_samples(pcm * 20)) == []  # no echo loop through the VAD
    assert len(base64.b64decode(voice_chunk("audio/pcmu", 8000))) == 480


# -- the assistant ---------------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def user(text: str) -> Item:
    return Item(type="message", role="user", content=(ContentPart(type="input_audio", transcript=text),))


@pytest.mark.parametrize(
    ("name", "text", "matches"),
    [
        ("get_weather", "what's the weather in Paris", True),
        ("get_weather", "Get weather", True),
        ("getWeather", "any weather news?", True),
        ("get_weather", "get me a coffee", False),
        ("book_flight", "I need flights to Rome", True),
    ],
)
def test_tool_matching(name: str, text: str, matches: bool) -> None:
    assert tool_matches(name, text) is matches


@pytest.mark.parametrize(
    ("properties", "required", "text", "expected"),
    [
        ({"city": {"type": "string"}}, ["city"], "what's the weather in Paris?", {"city": "Paris"}),
        ({"location": {"type": "string"}}, [], "weather in New York today", {"location": "New York"}),
        ({"city": {"type": "string"}}, ["city"], "weather please", {"city": ""}),
        (
            {"unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            ["unit"],
            "in fahrenheit",
            {"unit": "fahrenheit"},
        ),
        ({"days": {"type": "integer"}}, [], "forecast for 3 days", {"days": 3}),
        ({"name": {"type": "string"}}, [], "my name is Ada", {"name": "Ada"}),
        ({"loud": {"type": "boolean"}}, ["loud"], "quietly", {"loud": False}),
    ],
)
def test_arguments_come_from_the_schema_and_the_words(
    properties: dict[str, Any], required: list[str], text: str, expected: dict[str, Any]
) -> None:
    tool = {"name": "t", "parameters": {"type": "object", "properties": properties, "required": required}}
    assert build_arguments(tool, text) == expected


def test_decide_rules() -> None:
    assert decide([user("what's the weather in Paris")], [WEATHER]) == Call(
        name="get_weather", arguments=json.dumps({"city": "Paris"})
    )
    assert decide([user("weather in Paris")], [WEATHER], "none") == Say(text="You said: weather in Paris.")
    assert isinstance(decide([user("hello")], [WEATHER], "required"), Call)
    named = decide([user("hello")], [WEATHER], {"type": "function", "name": "get_weather"})
    assert isinstance(named, Call)
    call = Item.function_call("c1", "get_weather", "{}")
    assert decide([user("weather in Paris"), call], [WEATHER]) == Say(text="You said: weather in Paris.")
    output = Item.function_call_output("c1", "sunny")
    assert decide([user("weather in Paris"), call, output], [WEATHER]) == Say(text="The result is sunny.")
    assert decide([], []) == Say(text="Hello! How can I help you?")
    assert decide([user("")], []) == Say(text="I did not catch that.")


# -- handshake, config, faults ---------------------------------------------------------------

GOOD_PATH = "/api/v1/realtime/session?key=abc&protocol=realtime"


@pytest.mark.parametrize(
    ("path", "headers", "expected_key", "status"),
    [
        (GOOD_PATH, {"Authorization": "Basic abc=="}, None, None),
        (GOOD_PATH, {"authorization": "Bearer jwt.token.here"}, None, None),
        (GOOD_PATH, {}, None, 401),
        (GOOD_PATH, {"Authorization": "Token abc"}, None, 401),
        (GOOD_PATH, {"Authorization": "Basic "}, None, 401),
        ("/api/v1/realtime/session?protocol=realtime", {"Authorization": "Basic k"}, None, 400),
        ("/api/v1/realtime/session?key=abc", {"Authorization": "Basic k"}, None, 400),
        ("/api/v1/realtime/session?key=abc&protocol=chat", {"Authorization": "Basic k"}, None, 400),
        (GOOD_PATH, {"Authorization": "Basic right"}, "right", None),
        (GOOD_PATH, {"Authorization": "Basic wrong"}, "right", 401),
        # OpenAI's form: the model in the query, a Bearer key.
        ("/v1/realtime?model=gpt-realtime", {"Authorization": "Bearer sk-1"}, None, None),
        ("/v1/realtime?model=gpt-realtime", {"Authorization": "Basic sk-1"}, None, 401),
        ("/v1/realtime?model=", {"Authorization": "Bearer sk-1"}, None, 400),
        ("/v1/realtime?model=gpt-realtime", {}, None, 401),
        ("/v1/realtime?model=gpt-realtime", {"Authorization": "Bearer right"}, "right", None),
        ("/v1/realtime?model=gpt-realtime", {"Authorization": "Bearer wrong"}, "right", 401),
        ("/v1/realtime", {"Authorization": "Bearer sk-1"}, None, 400),  # neither form
        # Both forms' parameters: Inworld's rules apply (the session key is there).
        (GOOD_PATH + "&model=x", {"Authorization": "Basic k"}, None, None),
        ("/api/v1/realtime/session?key=&protocol=realtime", {"Authorization": "Basic k"}, None, 400),
    ],
)
def test_handshake_rules(
    path: str, headers: dict[str, str], expected_key: str | None, status: int | None
) -> None:
    refusal = check_request(path, headers, expected_key=expected_key)
    assert (refusal[0] if refusal else None) == status


def test_bad_session_defaults_are_refused_up_front() -> None:
    with pytest.raises(ConfigError) as caught:
        LocalServer(session={"audio": {"output": {"format": {"type": "audio/pcm", "rate": 1}}}})
    assert caught.value.param == "session.audio.output.format.rate"
    assert default_session({"audio": {"output": {"voice": "Sarah"}}})["audio"]["output"]["voice"] == "Sarah"


def test_faults_and_replays_are_validated() -> None:
    with pytest.raises(ValueError, match="drop_after"):
        Faults(drop_after=-1)
    with pytest.raises(ValueError, match="delay"):
        Faults(delay={"ping": -1.0})
    assert Faults(duplicate=["ping"]).duplicate == frozenset({"ping"})
    with pytest.raises(ValueError, match="replay entry"):
        Replay(events=[{"event_id": "x"}])
    with pytest.raises(ValueError, match="pace"):
        LocalServer(pace=-1)


# -- architecture ----------------------------------------------------------------------------

PURE_MODULES = (
    "session",
    "session_config",
    "responder",
    "assistant",
    "vad",
    "audio",
    "conversation",
    "items",
    "ids",
    "problems",
    "handshake",
    "faults",
)


@pytest.mark.parametrize("module", PURE_MODULES)
def test_the_core_does_no_io(module: str) -> None:
    """The sans-IO modules import no event loop, socket or clock (style.md rule 1)."""
    import ast
    from pathlib import Path

    import engine.server

    source = Path(engine.server.__file__).with_name(f"{module}.py").read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    forbidden = {"anyio", "trio", "asyncio", "socket", "time", "sniffio", "websockets", "trio_websocket"}
    assert not {name.split(".")[0] for name in imported} & forbidden
    assert not {
        name for name in imported if name.startswith(("engine.transports", "engine.server.connection"))
    }


def test_command_line_arguments() -> None:
    from engine.server.__main__ import _parser

    args = _parser().parse_args(["--port", "0", "--pace", "0.5", "--backend", "asyncio", "--say", "hi"])
    assert (args.port, args.pace, args.backend, args.say, args.host) == (
        0,
        0.5,
        "asyncio",
        ["hi"],
        "127.0.0.1",
    )
