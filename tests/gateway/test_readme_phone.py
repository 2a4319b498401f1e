"""The README's phone agent stays true: it loads as ``engine serve`` loads it, and takes a call."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import engine
from engine.core import events as ev
from engine.gateway.events import Dtmf
from engine.gateway.serve import load_agent
from tests.gateway.carrier import silence_ulaw, speech_ulaw
from tests.gateway.serving import Seen, phone_call, running_gateway

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def phone_example() -> str:
    section = README.split("## Put it on a phone", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return block


@pytest.fixture
def readme_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[engine.Agent]:
    """The README's ``weather.py``, written to a folder on ``sys.path`` and loaded by ``module:attribute``."""
    monkeypatch.delenv("INWORLD_API_KEY", raising=False)  # the example then uses the gateway's server
    (tmp_path / "readme_weather.py").write_text(phone_example(), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        yield load_agent("readme_weather:agent")
    finally:
        sys.modules.pop("readme_weather", None)


@pytest.mark.anyio
async def test_the_readme_phone_agent_answers_a_call_with_its_tool_and_hears_dtmf(
    readme_agent: engine.Agent, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = Seen()
    readme_agent.on()(seen)
    with anyio.fail_after(15):
        async with running_gateway(readme_agent) as served, phone_call(served, speed=8) as phone:
            await seen.until(lambda: seen.of(ev.SessionReady))
            await phone.press("7")
            served.server.say_next("What's the weather in Paris?")
            await phone.speak(speech_ulaw())
            await phone.speak(silence_ulaw(600))
            await seen.until(lambda: any(r.name == "get_weather" for r in seen.of(ev.ToolResult)))
            await seen.until(lambda: seen.of(Dtmf) and seen.of(ev.TurnMetrics))
    (result,) = [r for r in seen.of(ev.ToolResult) if r.name == "get_weather"]
    assert '"city": "Paris"' in result.output and not result.is_error
    out = capsys.readouterr().out
    assert "the caller pressed 7" in out  # the example's DTMF callback ran
    assert "twilio call" in out  # and its on_call hook, with the carrier's ids
