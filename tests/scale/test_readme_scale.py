"""The README's "Scale out" example runs: the dispatcher code a reader copies works as printed.

Two substitutions only: the agent path names a test agent with an endpoint on
the test's local server (the README's ``myagent:agent`` does not exist here),
and one host instead of four (the shared test cluster is small).
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import anyio
import pytest

from engine.server import LocalServer

pytestmark = [pytest.mark.ray, pytest.mark.anyio]

README = (Path(__file__).resolve().parent.parent.parent / "README.md").read_text(encoding="utf-8")


def _scale_example() -> str:
    section = README.split("## Scale out", 1)[1].split("\n## ", 1)[0]
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if "Dispatcher.start" in b]
    return block


AGENT = "tests.scale.dispatch_agents:weather"


async def test_the_readme_dispatcher_example_runs(
    ray_cluster: None, capsys: pytest.CaptureFixture[str]
) -> None:
    example = _scale_example()
    assert 'agent="myagent:agent"' in example and "hosts=4" in example
    with anyio.fail_after(60):
        async with LocalServer(pace=0, ping_interval=None).running() as server:
            endpoint = f"endpoint=Endpoint(url={server.url()!r}, key_env=None), "
            code = example.replace('agent="myagent:agent", ', f"agent={AGENT!r}, {endpoint}")
            code = code.replace("hosts=4", "hosts=1")
            body = "from engine.scale.spec import Endpoint\n" + code + "await dispatcher.aclose()\n"
            namespace: dict[str, object] = {}
            source = "async def main():\n" + textwrap.indent(body, "    ")
            exec(compile(source, "README.md", "exec"), namespace)
            await namespace["main"]()  # type: ignore[operator]
    out = capsys.readouterr().out
    assert "Placed(" in out and "Finished(" in out  # the progress stream, as printed
    assert "completed" in out  # the outcome's end reason
    assert "engine_dispatch_calls_total" in out  # the Prometheus text
