"""``Session.ask``: an out-of-band answer during a call, against the local server on a real socket."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import engine
from engine import events as ev
from engine.record import replay
from engine.server.faults import Faults
from tests.e2e.helpers import SETTINGS, Recorder, inworld, make_server, next_event, text_of, turn_done

pytestmark = pytest.mark.anyio
QUICK = engine.SessionSettings(
    close_timeout=0.5, reconnect=engine.ReconnectPolicy(initial_delay=0.01, jitter=0)
)


def _openai(server: engine.server.LocalServer) -> engine.OpenAI:
    return engine.OpenAI(api_key="e2e-local-key", url=server.openai_url())


async def test_ask_during_a_turn_answers_and_leaves_the_call_alone(tmp_path: Path) -> None:
    server = make_server(pace=0.5)  # the spoken answer lasts long enough to ask during it
    recorder = Recorder()
    path = tmp_path / "ask.jsonl"
    with anyio.fail_after(10):
        async with server.running():
            session = engine.Session(_openai(server), settings=SETTINGS, record=path)
            session.on()(recorder)
            async with session.connect():
                stream = session.events()
                await session.send_text("tell me something rather long, please")
                started = await next_event(stream, ev.ResponseStarted)
                answer = await session.ask("What did the caller ask for?")
                assert session.states["response"] == "generating"  # the turn's answer is still being spoken
                metrics = await turn_done(stream)
                history = session.history
    # The server's deterministic aside: the question, and the call so far as its context.
    assert answer == "Aside: What did the caller ask for? (2 items in context)"
    assert [text_of(item) for item in history] == [
        "tell me something rather long, please",
        "You said: tell me something rather long, please.",
    ]
    assert not [item for item in server.connections[0].conversation.items if "Aside" in text_of(item)]
    (done,) = recorder.of_type(ev.OutOfBandDone)
    assert done.text == answer and done.usage is not None and done.usage.total_tokens
    (inband,) = recorder.of_type(ev.ResponseDone)  # the aside is no ResponseDone, and costs the turn nothing
    assert (inband.response_id, inband.status) == (started.response_id, "completed")
    assert metrics.response_id == started.response_id and metrics.usage == inband.usage
    assert not recorder.of_type(ev.Error)
    result = replay(path)
    assert result.replayed and result.matches, result.first_difference()
    assert any(m.get("response", {}).get("conversation") == "none" for m in result.replayed)


async def test_ask_with_no_context_sees_only_its_prompt() -> None:
    server = make_server()
    with anyio.fail_after(10):
        async with server.running():
            session = engine.Session(_openai(server), settings=SETTINGS)
            async with session.connect():
                stream = session.events()
                await session.send_text("hello")
                await turn_done(stream)
                answer = await session.ask("Translate: merci", instructions="English only.", context="none")
                assert len(session.history) == 2
    assert answer == "Aside: Translate: merci (1 items in context)"


async def test_ask_while_the_socket_drops_raises_ask_lost() -> None:
    server = make_server()
    recorder = Recorder()
    with anyio.fail_after(10):
        async with server.running():
            session = engine.Session(_openai(server), settings=QUICK)
            session.on()(recorder)
            async with session.connect():
                stream = session.events()
                server.connections[0].faults = Faults(drop_at="response.output_text.delta")
                with pytest.raises(engine.AskFailed) as failed:
                    await session.ask("Are you there?")
                assert failed.value.code == "ask_lost"
                await next_event(stream, ev.Reconnected)
                # The call goes on: the next ask on the new socket is answered.
                assert await session.ask("Still there?") == "Aside: Still there? (0 items in context)"
    assert [e.code for e in recorder.of_type(ev.OutOfBandFailed)] == ["ask_lost"]


async def test_ask_after_close_and_while_closing_raises_session_closed() -> None:
    server = make_server(pace=1.0)
    with anyio.fail_after(10):
        async with server.running():
            session = engine.Session(_openai(server), settings=SETTINGS)
            async with session.connect():
                # A server that never answers: the ask waits until the session closes under it.
                server.connections[0].faults = Faults(silent_after=0)
                async with anyio.create_task_group() as tg:

                    async def ask() -> None:
                        with pytest.raises(engine.SessionClosed):
                            await session.ask("Hello?")

                    tg.start_soon(ask)
                    await anyio.wait_all_tasks_blocked()  # the ask is out and waiting
                    assert session.states["response"] == "idle"
                    await session.aclose()
                with pytest.raises(engine.SessionClosed):
                    await session.ask("Hello?")


async def test_ask_times_out_with_ask_timeout() -> None:
    server = make_server()
    with anyio.fail_after(10):
        async with server.running():
            session = engine.Session(_openai(server), settings=SETTINGS)
            async with session.connect():
                server.connections[0].faults = Faults(silent_after=0)
                with pytest.raises(engine.AskFailed) as failed:
                    await session.ask("Hello?", timeout=0.2)
                assert failed.value.code == "ask_timeout"


async def test_inworld_refuses_ask_locally_and_bad_arguments_raise_at_the_call() -> None:
    server = make_server()
    with anyio.fail_after(10):
        async with server.running():
            session = engine.Session(inworld(server), settings=SETTINGS)
            async with session.connect():
                with pytest.raises(engine.ConfigError, match="out of band"):
                    await session.ask("Hello?")
            session = engine.Session(_openai(server), settings=SETTINGS)
            async with session.connect():
                for bad, error in [
                    ({"prompt": 3}, TypeError),
                    ({"prompt": ""}, ValueError),
                    ({"prompt": "x", "context": "all"}, ValueError),
                    ({"prompt": "x", "timeout": -1}, ValueError),
                    ({"prompt": "\ud800"}, ValueError),
                ]:
                    with pytest.raises(error, match=r"ask\(\)"):
                        await session.ask(**bad)  # type: ignore[arg-type]
                    assert session.states["response"] == "idle"
                assert server.connections[1].conversation.items == []
                assert "response.create" not in server.connections[1].received_types
