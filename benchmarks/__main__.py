"""``python -m benchmarks``: run every benchmark, print the table, optionally write JSON.

Each (benchmark, backend) pair runs in a child process of its own (a fresh
interpreter: no warm caches or heap left over from another benchmark), which
hands its figures back as one JSON line. Missed targets are reported, not
failed: the exit status is non-zero only when a benchmark crashed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import report

ORDER = (
    "imports",
    "ingest",
    "observe",
    "audio_in",
    "barge_in",
    "memory",
    "calls",
    "phone",
    "placement",
    "serve_hop",
)
MARKER = "BENCHMARK-FIGURES "
ROOT = Path(__file__).resolve().parent.parent


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run the engine's benchmarks side by side with their floors; print a table.",
    )
    parser.add_argument("--quick", action="store_true", help="a small version of each, in seconds (for CI)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON here")
    parser.add_argument(
        "--only", action="append", choices=ORDER, metavar="NAME", help=f"run only these ({', '.join(ORDER)})"
    )
    parser.add_argument("--backend", choices=("asyncio", "trio", "both"), default="both")
    parser.add_argument("--worker", nargs=2, metavar=("NAME", "BACKEND"), help=argparse.SUPPRESS)
    return parser


def _worker(name: str, backend: str, quick: bool) -> int:
    """Run one benchmark on one backend in this process; print its figures as one line."""
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    module = importlib.import_module(f"benchmarks.{name}")
    revision = report.revision()  # other work may land while the suite runs: note what this one saw
    figures = [f.to_json() for f in module.run(backend, quick)]
    for f in figures:
        f["extra"]["engine_revision"] = revision
    print(MARKER + json.dumps(figures), flush=True)
    return 0


def _jobs(only: list[str] | None, backend: str) -> list[tuple[str, str]]:
    jobs = []
    for name in only or ORDER:
        module = importlib.import_module(f"benchmarks.{name}")
        for b in module.BACKENDS:
            if b == "-" or backend in ("both", b):
                jobs.append((name, b))
    return jobs


def _spawn(name: str, backend: str, quick: bool) -> list[dict[str, Any]] | None:
    """Run a worker; its figures, or ``None`` if it crashed."""
    command = [sys.executable, "-m", "benchmarks", "--worker", name, backend]
    if quick:
        command.append("--quick")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    timeout = 300 if quick else 3600
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        print(f"{name} ({backend}) timed out after {timeout}s", file=sys.stderr)
        return None
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode != 0 or not lines:
        print(f"{name} ({backend}) crashed with exit status {done.returncode}", file=sys.stderr)
        return None
    figures: list[dict[str, Any]] = json.loads(lines[-1][len(MARKER) :])
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the suite (or, as a worker, one benchmark)."""
    args = _parser().parse_args(argv)
    if args.worker:
        return _worker(args.worker[0], args.worker[1], args.quick)
    figures: list[dict[str, Any]] = []
    crashed: list[str] = []
    started = time.perf_counter()
    for name, backend in _jobs(args.only, args.backend):
        print(
            f"running {name} ({backend}){' --quick' if args.quick else ''} ...", file=sys.stderr, flush=True
        )
        result = _spawn(name, backend, args.quick)
        if result is None:
            crashed.append(f"{name} ({backend})")
        else:
            figures += result
    print(report.table(figures, crashed))
    elapsed = time.perf_counter() - started
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    mode = " (quick)" if args.quick else ""
    done = f"{len(figures)} figures in {elapsed:.0f} s{mode}"
    print(f"\n{done}; engine {report.revision()}; load average {load}")
    if args.json is not None:
        report.write(args.json, report.document(figures, crashed, args.quick))
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
