"""A Ray Serve request router that sends each call to the replica with the fewest calls in flight.

Serve's default router (power of two choices) ranks replicas on queue lengths
it caches from the replicas' replies; under a burst of calls every routing
decision reads the same stale figures, so two replicas of capacity K can see
K+2 and K-2 calls, and the gateway of the first refuses calls the second had
room for. This router keeps its own count of the requests it has sent to each
replica and not yet seen complete, reads the least and reserves it in one
synchronous step (no ``await`` in between), so a burst routed concurrently
through one proxy fills every replica to exactly K before any refusal.

A replica at Serve's ``max_ongoing_requests`` rejects the request and Serve
retries it; the router then waits Serve's initial backoff before choosing
again (no busy loop). A request that is refused (the gateway answers 503 or closes with 1013), that
completes, or that Serve cancels or retries fires ``on_request_completed``
exactly once per dispatch (Ray's router guarantees it), which releases the
slot. The counts are per proxy: with several proxies (one per node) each
balances its own share, and the gateways' own caps stay exact.

Routing is done in ``_choose_replica_for_request``, the per-request step of
Serve's ``RequestRouter`` (as Ray's own experimental capacity-queue router
does), rather than in ``choose_replicas``: the routing tasks that call
``choose_replicas`` may drop a choice (a cache says full, a request was
cancelled meanwhile) without any callback, which would leak a reservation.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from engine.scale.cluster import require_ray

require_ray()

from ray.serve.request_router import (  # noqa: E402  (after the extra check)
    PendingRequest,
    ReplicaID,
    RequestRouter,
    RunningReplica,
)

log = logging.getLogger(__name__)

ROUTER = "engine.scale.router:LeastInFlightRouter"
"""The import path Serve's ``request_router_config`` takes."""


class LeastInFlightRouter(RequestRouter):
    """Least calls in flight, counted by the router itself, reserved when chosen."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._in_flight: dict[ReplicaID, int] = {}
        self._turn = itertools.count()
        super().__init__(*args, **kwargs)

    def initialize_state(self, **kwargs: Any) -> None:
        """Serve's hook for ``request_router_kwargs`` (none are taken)."""

    @property
    def in_flight(self) -> dict[ReplicaID, int]:
        """Requests sent to each replica and not yet completed (for tests and logs)."""
        return dict(self._in_flight)

    def least_loaded(self, candidates: list[RunningReplica]) -> RunningReplica:
        """The candidate with the fewest requests in flight; ties go round-robin."""
        start = next(self._turn) % len(candidates)
        ordered = candidates[start:] + candidates[:start]
        return min(ordered, key=lambda r: self._in_flight.get(r.replica_id, 0))

    def reserve(self, replica: RunningReplica) -> None:
        self._in_flight[replica.replica_id] = self._in_flight.get(replica.replica_id, 0) + 1

    async def _choose_replica_for_request(
        self, pending_request: PendingRequest, *, is_retry: bool = False
    ) -> RunningReplica:
        """Serve's per-request routing step: choose and reserve with no await in between."""
        if is_retry:  # every replica was at max_ongoing_requests: back off before choosing again
            await self._backoff(0)
        while not self._replicas:  # no replica yet (starting, or all replaced): wait for one
            self._replicas_updated_event.clear()
            await self._replicas_updated_event.wait()
        replica = self.least_loaded(self._replicas_list)
        self.reserve(replica)
        return replica

    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        """Every candidate, fewest in flight first (used only if Serve routes through its routing tasks)."""
        ranked = sorted(candidate_replicas, key=lambda r: self._in_flight.get(r.replica_id, 0))
        return [[r] for r in ranked]

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        """A dispatched request ended (answered, refused, failed, cancelled): release its slot."""
        count = self._in_flight.get(replica_id, 0)
        if count <= 1:
            self._in_flight.pop(replica_id, None)
        else:
            self._in_flight[replica_id] = count - 1

    def update_replicas(self, replicas: list[RunningReplica]) -> None:
        """Serve's new set of replicas; the counts of replicas gone are forgotten."""
        super().update_replicas(replicas)
        live = {r.replica_id for r in replicas}
        for gone in [r for r in self._in_flight if r not in live]:
            del self._in_flight[gone]
