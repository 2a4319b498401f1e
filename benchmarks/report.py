"""The printed table and the JSON document."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLUMNS = ("benchmark", "backend", "metric", "engine", "floor", "ratio", "target", "met?")


def number(value: float | None, unit: str = "") -> str:
    """A figure with three significant digits (and its unit), ``-`` for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def verdict(met: bool | None) -> str:
    """``yes``, ``MISSED`` or blank (no target)."""
    if met is None:
        return ""
    return "yes" if met else "MISSED"


def rows(figures: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Table rows of figure dicts (as :meth:`Figure.to_json` makes them)."""
    out: list[tuple[str, ...]] = []
    for f in figures:
        r = f.get("ratio")
        out.append(
            (
                f["benchmark"],
                f["backend"],
                f["metric"],
                number(f["engine"], f["unit"]),
                number(f.get("floor"), f["unit"]),
                "-" if r is None or (isinstance(r, float) and math.isnan(r)) else f"{r:.2f}x",
                f.get("target", ""),
                verdict(f.get("met")),
            )
        )
    return out


def table(figures: Sequence[dict[str, Any]], failures: Sequence[str] = ()) -> str:
    """A plain-text table of every figure, then one line per crashed benchmark."""
    body = [COLUMNS, *rows(figures)]
    widths = [max(len(row[i]) for row in body) for i in range(len(COLUMNS))]
    lines = []
    for n, row in enumerate(body):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += [f"CRASHED: {name}" for name in failures]
    return "\n".join(lines)


def document(figures: Sequence[dict[str, Any]], failures: Sequence[str], quick: bool) -> dict[str, Any]:
    """The JSON report: figures grouped by benchmark, and the run's context."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for f in figures:
        grouped.setdefault(f["benchmark"], []).append(f)
    return {
        "quick": quick,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": _cpus(),
        "loadavg_at_end": list(os.getloadavg()),
        "engine_revision": revision(),
        "benchmarks": grouped,
        "crashed": list(failures),
    }


def write(path: Path, doc: dict[str, Any]) -> None:
    """Write the JSON report (``NaN`` becomes ``null``)."""
    path.write_text(json.dumps(_clean(doc), indent=2) + "\n")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def revision() -> str:
    """The git commit of the tree measured, with ``+dirty`` when ``engine/`` has local edits."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        clean = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "engine"], cwd=root, check=False)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("" if clean.returncode == 0 else "+dirty")
