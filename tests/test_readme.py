"""The README stays true: its Usage example runs, and its diagram is the code's."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import pytest

import engine

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def test_readme_diagram_is_generated_from_the_code() -> None:
    assert engine.diagram() in _blocks("mermaid")


def test_quickstart_has_exactly_two_commands() -> None:
    quickstart = README.split("## Quickstart", 1)[1]
    first_block = re.search(r"```\n(.*?)```", quickstart, re.S)
    assert first_block is not None
    commands = [line for line in first_block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    assert "engine demo" in commands[0]
    assert "[test]" in commands[1] and "pytest" in commands[1]


@pytest.mark.anyio
async def test_usage_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    (example,) = [b for b in _blocks("python") if "async def main" in b]
    code = example.replace("anyio.run(main)", "")
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    with anyio.fail_after(20):
        await namespace["main"]()  # type: ignore[operator]
    out = capsys.readouterr().out
    assert "assistant:" in out and "21" in out  # the tool's answer reached the transcript
    assert "session_ready" in out
