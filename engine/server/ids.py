"""Deterministic ids for one connection: ``item_L0_0003``, ``resp_L0_0001``, ``event_L0_0042``.

Real servers use random ids; counters make test failures reproducible and the
connection index in every id makes logs of several connections easy to read.
"""

from __future__ import annotations


class Ids:
    """Per-prefix counters, tagged with the connection index."""

    def __init__(self, index: int = 0) -> None:
        self._tag = f"L{index}"
        self._counters: dict[str, int] = {}

    def next(self, prefix: str) -> str:
        """The next id with ``prefix`` (``item``, ``resp``, ``call``, ``event``, ``conv``)."""
        n = self._counters.get(prefix, 0) + 1
        self._counters[prefix] = n
        return f"{prefix}_{self._tag}_{n:04d}"
