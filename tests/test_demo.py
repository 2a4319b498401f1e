"""The demo of the README's first command, in both dialects, under both backends.

Both dialects run side by side (each with its own local server): the demo's
simulated microphone and speaker run in real time, so this halves the wait.
"""

from __future__ import annotations

import argparse
import io

import anyio
import pytest

from engine.demo import add_arguments, run_demo

pytestmark = pytest.mark.anyio
PROVIDERS = ("inworld", "openai")


async def test_demo_runs_the_whole_script_against_the_local_server() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    outputs = {provider: io.StringIO() for provider in PROVIDERS}
    statuses: dict[str, int] = {}

    async def demo(provider: str) -> None:
        args = parser.parse_args(["--provider", provider, "--pace", "0"])
        statuses[provider] = await run_demo(args, outputs[provider])

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for provider in PROVIDERS:
                tg.start_soon(demo, provider)

    for provider in PROVIDERS:
        text = outputs[provider].getvalue()
        assert statuses[provider] == 0, text
        assert "local realtime server on 127.0.0.1:" in text
        assert f"{provider}, state" in text  # the connected line names the dialect
        assert "tool calls answered: get_weather" in text
        assert "barge-in: item" in text and "the user heard" in text
        assert "errors: 0 (0 fatal)" in text
        assert text.rstrip().endswith("final state: closed")
