"""``engine serve``: the drain in-process and in a real process on SIGTERM, loading APP, the CLI's errors."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio
import pytest

import engine
from engine.core import events as ev
from engine.gateway.calls import SHUTTING_DOWN
from engine.gateway.serve import demo_agent, load_agent
from tests.gateway.carrier import twilio_call
from tests.gateway.serving import Seen, http, phone_call, running_gateway, weather_agent

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


async def test_drain_lets_a_live_call_end_then_closes_it_cleanly() -> None:
    agent = weather_agent(settings=engine.SessionSettings(ready_timeout=3, close_timeout=1))
    seen = Seen()
    agent.on()(seen)
    with anyio.fail_after(10):
        async with running_gateway(agent, drain_timeout=0.8) as served, phone_call(served) as phone:
            await seen.until(lambda: seen.of(ev.SessionReady))
            live = served.gateway.registry.live[0]
            served.gateway.drain()
            served.stop.set()  # as SIGTERM does
            status, _, body = await http(served.port, "GET", "/readyz")
            assert (status, body) == (503, b"not ready: draining\n")
            assert served.gateway.registry.live == (live,)  # not ended before the drain timeout
            async with phone_call(served, start=False) as late:
                await late.until(lambda: late.closed is not None)
            assert isinstance(late.closed, engine.ConnectionClosed) and late.closed.code == 1013
            await phone.until(lambda: phone.closed is not None)
            # The drain timeout passed: the session was closed, then the carrier's socket (1000).
            assert isinstance(phone.closed, engine.ConnectionClosed) and phone.closed.code == 1000
            assert live.end_reason == SHUTTING_DOWN and not live.failed
            closed = seen.of(ev.Closed)
            assert len(closed) == 1 and closed[0].error is None
            with anyio.fail_after(3):
                await served.stopped.wait()  # the server stopped once the drain was done


async def test_sigterm_drains_a_live_call_and_exits_0() -> None:
    command = [sys.executable, "-m", "engine", "serve", "--port", "0", "--drain-timeout", "0.5"]
    command += ["--backend", _running()]  # the process serves under the backend of this test
    with anyio.fail_after(20):
        async with await anyio.open_process(command, cwd=ROOT) as process:
            assert process.stdout is not None
            line = b""
            while not line.endswith(b"\n"):
                line += await process.stdout.receive(1)
            text = line.decode()
            assert text.startswith("engine serve: listening on http://127.0.0.1:"), text
            port = int(text.split("127.0.0.1:")[1].split()[0])
            url = f"ws://127.0.0.1:{port}/twilio/stream"
            async with twilio_call(url, speed=4) as phone:
                active = 'engine_live_calls{state="active"} 1.0'
                while active not in (await http(port, "GET", "/metrics"))[2].decode():
                    pass  # each poll awaits the gateway's answer; bounded by fail_after
                process.send_signal(signal.SIGTERM)
                await phone.until(lambda: phone.closed is not None)
            assert isinstance(phone.closed, engine.ConnectionClosed) and phone.closed.code == 1000
            assert await process.wait() == 0
            rest = b""
            async for chunk in process.stdout:
                rest += chunk
            assert b"drained" in rest
            assert process.stderr is not None
            log = b""
            async for chunk in process.stderr:
                log += chunk
            # One end line for the call, saying the drain ended it; no key in the log.
            assert log.count(b"call ended") == 1 and b"reason='gateway shutting down'" in log
            assert b"local-key" not in log


def _running() -> str:
    import sniffio

    return sniffio.current_async_library()


def test_load_agent_names_what_is_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "myagent.py").write_text(
        "import engine\nagent = engine.Agent(config=engine.SessionConfig(instructions='hi'))\nother = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert isinstance(load_agent("myagent:agent"), engine.Agent)
    with pytest.raises(ValueError, match="module:attribute"):
        load_agent("myagent")
    with pytest.raises(ValueError, match="no attribute 'missing'"):
        load_agent("myagent:missing")
    with pytest.raises(TypeError, match=r"not an engine\.Agent"):
        load_agent("myagent:other")
    with pytest.raises(ValueError, match="cannot import"):
        load_agent("no_such_module_here:agent")


def test_the_demo_agent_has_the_weather_tool() -> None:
    assert [tool.name for tool in demo_agent().tools] == ["get_weather"]


def test_url_without_a_key_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.cli import main

    monkeypatch.delenv("INWORLD_API_KEY", raising=False)
    status = main(["serve", "--port", "0", "--url", "wss://example.invalid/realtime"])
    assert status == 2
    assert "INWORLD_API_KEY" in capsys.readouterr().err
