"""Scale-out on Ray: the gateway as a Ray Serve application, and a dispatcher for calls the system places.

Two shapes, because calls arrive two ways (docs/scale.md):

* **Inbound sockets** (a carrier's media stream, a browser) live where their
  socket landed: :mod:`engine.scale.serve` runs the gateway's ASGI app as a
  Serve deployment, each replica holding at most ``capacity`` calls.
* **Placed calls** (outbound, simulated callers, batches) go through
  :mod:`engine.scale.dispatcher`: call-host actors with exact admission,
  least-loaded placement, a queue deadline, and failover from a checkpoint.

Needs the ``ray`` extra (``pip install 'engine[ray]'``); ``import engine`` never
imports Ray.
"""

from __future__ import annotations

MISSING_EXTRA = "engine.scale needs the 'ray' extra: pip install 'engine[ray]'"
