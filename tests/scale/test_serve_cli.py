"""``engine serve --ray``: deploys the gateway on Ray Serve, serves a call, drains it on stop, exits 0."""

from __future__ import annotations

import argparse
import io
from collections.abc import Iterator

import anyio
import pytest

import engine
from engine.gateway.serve import add_arguments, run_serve
from tests.gateway.carrier import twilio_call
from tests.gateway.serving import ulaw_silence, ulaw_speech
from tests.scale.test_serve import free_port

pytestmark = [
    pytest.mark.ray,
    pytest.mark.filterwarnings(r"ignore::DeprecationWarning:ray\..*"),  # Ray Serve's pydantic models
]


class Terminal(io.StringIO):
    """The command's standard output, waking :meth:`until` on every write."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = anyio.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        self.changed.set()
        return written

    async def until(self, text: str) -> str:
        while text not in self.getvalue():
            self.changed = anyio.Event()
            await self.changed.wait()
        return self.getvalue()


@pytest.fixture(scope="module")
def serve_stops(ray_cluster: None) -> Iterator[None]:
    yield
    from ray import serve

    serve.shutdown()


@pytest.mark.anyio
async def test_serve_ray_serves_a_call_then_drains_it_on_stop(serve_stops: None) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    port = free_port()
    args = parser.parse_args(["--ray", "--port", str(port), "--capacity", "2", "--drain-timeout", "0.5"])
    out, stop = Terminal(), anyio.Event()
    status: list[int] = []

    async def command() -> None:
        status.append(await run_serve(args, out, stop=stop))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(command)
            text = await out.until("calls per replica)")
            # Where Serve's proxy listens (Serve keeps the port of its first start in the session).
            assert text.startswith("engine serve: listening on http://127.0.0.1:"), text
            assert text.endswith(" (Ray Serve, 2 calls per replica)\n"), text
            url = text.split("listening on ", 1)[1].split()[0].replace("http://", "ws://")
            # The demo agent on the replica, against the replica's embedded local realtime server.
            async with twilio_call(f"{url}/twilio/stream", speed=10) as phone:
                await phone.speak(ulaw_speech())
                await phone.speak(ulaw_silence(600))
                await phone.until(lambda: phone.media())  # the agent answered through the Serve proxy
                stop.set()  # as SIGTERM does: the application is deleted, its replica drains
                await phone.until(lambda: phone.closed is not None)
            assert isinstance(phone.closed, engine.ConnectionClosed) and phone.closed.code == 1000
    assert status == [0]
    assert out.getvalue().endswith("engine serve: drained, bye\n")


def test_serve_ray_refuses_bad_options_before_starting_ray(
    ray_installed: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.cli import main

    monkeypatch.delenv("INWORLD_API_KEY", raising=False)
    assert main(["serve", "--ray", "--url", "wss://example.invalid/realtime"]) == 2
    assert "INWORLD_API_KEY" in capsys.readouterr().err  # a local cluster's replicas would lack it too
    assert main(["serve", "--ray", "--capacity", "0"]) == 2
    assert "capacity must be at least 1, got 0" in capsys.readouterr().err
    assert main(["serve", "--ray", "--min-replicas", "3", "--max-replicas", "2"]) == 2
    assert "max_replicas must be at least" in capsys.readouterr().err
