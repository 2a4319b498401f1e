"""Session tests: tolerate (narrowly) the engine's unclosed memory streams, and collect them here.

Engine bug (reported; exposed by ``test_closing_a_session_closes_its_streams``,
a strict xfail): a closed session leaves anyio memory streams unclosed (the
receive ends of the outbox, audio-in, tool-runner and ``events()`` streams,
and both ends of the first outbox), so anyio warns ``ResourceWarning: Unclosed
<MemoryObject...Stream>`` when the session is garbage collected, and the
project's ``filterwarnings = error`` turns that into a failure of whichever
test happens to be running. Until it is fixed, tests here ignore exactly that
warning, and the garbage of each test is collected at its own teardown so
nothing leaks into tests elsewhere. Delete this file with the fix.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

UNCLOSED_STREAM = r"Unclosed <MemoryObject(Send|Receive)Stream"


HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents and "closes_its_streams" not in item.name:
            item.add_marker(pytest.mark.filterwarnings(f"ignore:{UNCLOSED_STREAM}:ResourceWarning"))


@pytest.fixture(autouse=True)
def _collect_session_garbage() -> Iterator[None]:
    yield
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", UNCLOSED_STREAM, ResourceWarning)
        gc.collect()
