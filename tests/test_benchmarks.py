"""The benchmark suite runs end to end (``--quick``); it proves the suite works, never judges speed."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from benchmarks.__main__ import ORDER

ROOT = Path(__file__).resolve().parent.parent


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_quick_suite_runs_and_reports_every_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,  # every benchmark on both backends; the phone calls start processes too
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["quick"] is True
    assert doc["crashed"] == []
    assert set(doc["benchmarks"]) == set(ORDER)
    for name in ORDER:
        figures = doc["benchmarks"][name]
        assert figures, name
        assert all(_number(f["engine"]) for f in figures), (name, figures)
        assert any(_number(f["ratio"]) for f in figures), (name, figures)
        assert all(isinstance(f["met"], bool) or f["met"] is None for f in figures)
    table = done.stdout
    for name in ORDER:
        assert f"\n{name} " in table, name
    for backend in ("asyncio", "trio"):
        assert backend in table
