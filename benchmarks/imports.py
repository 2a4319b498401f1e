"""Import time of ``import engine``, in fresh interpreters, against the interpreter's own start-up.

Engine: wall time of ``python -c "import engine"`` minus the floor, best of k.
Floor: ``python -c pass``, best of k, alternated with the engine runs. Also
reported: the same for ``engine.Session`` (which pulls in the runtime lazily),
and the heaviest modules under ``-X importtime``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from benchmarks._common import Figure

NAME = "imports"
BACKENDS = ("-",)
TARGET_MS = 150.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    return env


def _wall(code: str) -> float:
    env = _env()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
    return time.perf_counter() - start


def heaviest(count: int = 8) -> list[dict[str, object]]:
    """The modules with the largest self time under ``-X importtime`` (one run)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import engine"],
        check=True, env=_env(), cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
        rows.append(
            {"module": name.strip(), "self_ms": int(own) / 1000, "cumulative_ms": int(cumulative) / 1000}
        )
    rows.sort(key=lambda r: -float(r["self_ms"]))  # type: ignore[arg-type]
    return rows[:count]


def run(backend: str, quick: bool) -> list[Figure]:
    """Milliseconds added by ``import engine`` to a fresh interpreter."""
    k = 3 if quick else 7
    floor, plain, full = [], [], []
    for _ in range(k):
        floor.append(_wall("pass"))
        plain.append(_wall("import engine"))
        full.append(_wall("import engine; engine.Session"))
    base = min(floor)
    engine_ms = (min(plain) - base) * 1000
    session_ms = (min(full) - base) * 1000
    return [
        Figure(
            benchmark=NAME,
            backend=backend,
            metric="import engine",
            unit="ms",
            engine=engine_ms,
            floor=base * 1000,
            ratio=min(plain) / base,
            target=f"< {TARGET_MS:.0f} ms",
            met=engine_ms < TARGET_MS,
            extra={
                "best_of": k,
                "floor_is": "python -c pass (ms); ratio is the total against it",
                "with_engine_Session_ms": session_ms,
                "heaviest_modules": heaviest(),
            },
        )
    ]
