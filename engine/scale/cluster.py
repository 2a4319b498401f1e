"""Joining or starting a Ray cluster for ``engine``: one place for the options every entry point uses."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from engine.scale import MISSING_EXTRA

log = logging.getLogger(__name__)


def require_ray() -> Any:
    """The ``ray`` module, or ``RuntimeError`` naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise RuntimeError(MISSING_EXTRA) from None
    return ray


def connect(address: str | None = None, *, num_cpus: int | None = None, namespace: str = "engine") -> None:
    """Join the Ray cluster at ``address`` (``auto``: the one this node belongs to), or start a local one.

    A local cluster binds to 127.0.0.1, starts no dashboard, and hands its
    workers this process's ``sys.path`` (so an agent module beside the working
    directory imports there as it does here). Already connected: nothing happens.
    """
    ray = require_ray()
    if ray.is_initialized():
        return
    path = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    runtime_env = {"env_vars": {"PYTHONPATH": path}}
    if address is None:
        log.info("starting a local Ray cluster (127.0.0.1, %s CPUs)", num_cpus or "all")
        ray.init(
            address="local",
            num_cpus=num_cpus,
            namespace=namespace,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            runtime_env=runtime_env,
            configure_logging=False,
            log_to_driver=False,
        )
        return
    log.info("joining the Ray cluster at %s", address)
    ray.init(address=address, namespace=namespace, runtime_env=runtime_env, configure_logging=False)


def disconnect() -> None:
    """Leave (or stop, when this process started it) the Ray cluster."""
    ray = require_ray()
    if ray.is_initialized():
        ray.shutdown()
