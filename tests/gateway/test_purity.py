"""The carrier dialects and the mark ledger are sans-IO, like the core: no I/O library, no clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.test_purity import FORBIDDEN_MODULES, IMPURE_IMPORT, PACKAGE, _loaded_after

SANS_IO = (
    "engine.gateway.carriers.twilio",
    "engine.gateway.carriers.telnyx",
    "engine.gateway.carriers.telnyx_signature",
    "engine.gateway.marks",
)
SOURCES = sorted([*PACKAGE.glob("gateway/carriers/*.py"), PACKAGE / "gateway" / "marks.py"])


def test_dialects_and_ledger_import_no_io() -> None:
    loaded = _loaded_after(*SANS_IO, bare_package=True)
    assert "engine" in loaded
    assert sorted(loaded & (FORBIDDEN_MODULES | {"starlette", "hypercorn"})) == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_clock_randomness_or_threads(path: Path) -> None:
    assert IMPURE_IMPORT.findall(path.read_text(encoding="utf-8")) == []
