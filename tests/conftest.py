"""Shared test configuration: every async test runs under asyncio and trio.

Property tests are deterministic by default: the ``ci`` Hypothesis profile
derives each test's examples from its name (``derandomize``), keeps no example
database and has no deadline (two shared cores make timings noise), so every
run tries the same cases. ``ENGINE_HYPOTHESIS=explore`` selects a profile that
draws fresh random examples and more of them, for hunting new failures by hand;
a failure it finds is pinned with ``@example`` before it is fixed.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("explore", derandomize=False, database=None, deadline=None, max_examples=1000)
PROFILE = os.environ.get("ENGINE_HYPOTHESIS", "ci")
settings.load_profile(PROFILE)


def _random_settings(item: pytest.Item) -> bool:
    chosen = getattr(getattr(item, "obj", None), "_hypothesis_internal_use_settings", None)
    return chosen is not None and (not chosen.derandomize or chosen.database is not None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``ci``, refuse a property test whose own settings make it random again."""
    random = [item.nodeid for item in items if _random_settings(item)] if PROFILE == "ci" else []
    if random:
        raise pytest.UsageError(f"property tests must stay deterministic under 'ci': {random}")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each ``@pytest.mark.anyio`` test once per backend."""
    return str(request.param)
