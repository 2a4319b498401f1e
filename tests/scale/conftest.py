"""A small local Ray cluster shared by every test of tests/scale (loopback only, no dashboard).

Ray is an optional extra: without it these tests skip with the reason; under
``CI=true`` they fail instead, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

try:
    import ray
except ImportError:  # pragma: no cover - the extra is part of the test extra
    ray = None

pytestmark = pytest.mark.ray

# test_dispatch.py imports Ray at its top: without the extra it is left out here (its siblings
# skip with the reason through ``ray_cluster``), except under CI, where it fails to import.
collect_ignore = ["test_dispatch.py"] if ray is None and os.environ.get("CI", "").lower() != "true" else []

CPUS = 4  # logical CPUs for a 2-core machine: three hosts, Serve's controller and proxy, two replicas


def require_ray() -> None:
    """Skip (or under CI=true, fail) when Ray is not installed."""
    if ray is None:
        reason = "ray is not installed: pip install 'engine[ray]'"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"ray test cannot run under CI=true: {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture
def ray_installed() -> None:
    """For tests that need Ray's packages but no cluster: skip (or fail under CI) without them."""
    require_ray()


@pytest.fixture(scope="package")
def ray_cluster() -> Iterator[None]:
    """A local Ray cluster for the tests of tests/scale, stopped after the last of them.

    Package scope, not session: Ray's processes must not stay up (and take CPU)
    through the rest of the suite, the benchmarks' quick run among it.
    """
    require_ray()
    from engine.scale import cluster

    cluster.connect(num_cpus=CPUS)
    try:
        yield
    finally:
        cluster.disconnect()
