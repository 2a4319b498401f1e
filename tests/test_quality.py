"""Static checks the project promises: mypy --strict and ruff on the package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_mypy_strict_is_clean() -> None:
    result = _run("mypy", "--strict", "engine")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    result = _run("ruff", "check", "engine", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_ships_py_typed() -> None:
    assert (ROOT / "engine" / "py.typed").exists()


def test_no_module_of_the_package_is_over_500_lines() -> None:
    """Files a newcomer reads in one sitting: no module of ``engine/`` over 500 lines."""
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for path in (ROOT / "engine").rglob("*.py")
    }
    assert sizes, "no modules found"
    too_long = {path: lines for path, lines in sizes.items() if lines > 500}
    assert not too_long, f"modules over 500 lines (split them along their seams): {too_long}"
