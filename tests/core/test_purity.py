"""The core and the wire layer are pure: no I/O, no event loop, no clock, no randomness.

Two import probes run in a fresh interpreter. The first imports the modules the
normal way; the second installs a bare ``engine`` package first, so only the
import graph of ``engine.core`` and ``engine.protocol`` themselves is measured.

"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import engine

FORBIDDEN_MODULES = frozenset(
    {"anyio", "trio", "asyncio", "socket", "websockets", "trio_websocket", "sniffio"}
)
PACKAGE = Path(engine.__file__).parent
PURE_SOURCES = sorted([*PACKAGE.glob("core/*.py"), *PACKAGE.glob("protocol/*.py")])
PURE_MODULES = ("engine.core.conversation", "engine.protocol")
# `import time`, `from time import ...`, and the same for datetime, random and threading.
IMPURE_IMPORT = re.compile(r"^\s*(?:import|from)\s+(time|datetime|random|threading)\b", re.MULTILINE)

_BARE_PACKAGE = (
    "import types\n"
    "pkg = types.ModuleType('engine')\n"
    f"pkg.__path__ = [{str(PACKAGE)!r}]\n"
    "sys.modules['engine'] = pkg\n"
)


def _loaded_after(*modules: str, bare_package: bool = False) -> set[str]:
    """Top-level module names present in a fresh interpreter after importing ``modules``."""
    code = (
        "import importlib, json, sys\n"
        + (_BARE_PACKAGE if bare_package else "")
        + f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent
    )
    return set(json.loads(result.stdout))


def test_core_and_protocol_import_no_io() -> None:
    """Importing the conversation core and the protocol package loads no I/O library."""
    loaded = _loaded_after(*PURE_MODULES)
    assert "engine" in loaded  # the probe really imported the package
    assert sorted(loaded & FORBIDDEN_MODULES) == []


def test_core_own_imports_are_pure() -> None:
    """Without the package __init__, the core's own import graph loads no I/O library."""
    loaded = _loaded_after(*PURE_MODULES, bare_package=True)
    assert "engine" in loaded
    assert sorted(loaded & FORBIDDEN_MODULES) == []


def test_protocol_alone_imports_no_io() -> None:
    """The wire layer on its own is already pure (it does not touch transitions)."""
    loaded = _loaded_after("engine.protocol", "engine.errors", bare_package=True)
    assert "engine" in loaded
    assert sorted(loaded & FORBIDDEN_MODULES) == []


def test_the_probe_detects_io_imports() -> None:
    """The subprocess probe notices an I/O import (it is not vacuous)."""
    assert {"asyncio", "socket"} <= _loaded_after("asyncio", bare_package=True)


def test_pure_sources_exist() -> None:
    """The scan below covers the real package (every core and protocol module)."""
    names = {f"{p.parent.name}/{p.name}" for p in PURE_SOURCES}
    assert {"core/conversation.py", "core/states.py", "protocol/codec.py", "protocol/config.py"} <= names


@pytest.mark.parametrize("path", PURE_SOURCES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_clock_randomness_or_threads(path: Path) -> None:
    """Time is an input and there is one thread: no time, datetime, random or threading imports."""
    found = IMPURE_IMPORT.findall(path.read_text(encoding="utf-8"))
    assert found == [], f"{path.name} imports {found}"


@pytest.mark.parametrize(
    ("source", "hit"),
    [
        ("import time\n", True),
        ("from datetime import datetime\n", True),
        ("    import random  # lazily\n", True),
        ("import threading, os\n", True),
        ("import timeit\n", False),
        ("from engine.core import states\n", False),
        ('"""we never import time here"""\n', False),
    ],
)
def test_scan_pattern(source: str, hit: bool) -> None:
    """The scan's pattern matches real imports and nothing else."""
    assert bool(IMPURE_IMPORT.search(source)) is hit
