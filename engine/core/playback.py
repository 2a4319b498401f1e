"""The playback ledger: how much of each assistant audio item the user actually heard.

Truncation must say what was *played*, not what was received (docs/peers.md
§2.2): more than was received is an error on the server, and 0 ms is not a
truncation but a deletion (docs/protocol.md §8). The ledger keeps, per
response, its audio items in playback order with the milliseconds received,
and takes what was played from one of two sources:

* **acknowledgements** (preferred): the application calls
  ``session.audio_played(item_id, ms)`` with the milliseconds of that item its
  speaker has played so far (cumulative, per item);
* **an estimate** otherwise: the wall-clock time since the response's first
  delta, laid over its items in order, each clamped to what was received.

**One rounding rule.** Every quantity enters the ledger as whole milliseconds
through :func:`whole_ms`: taken to the nearest microsecond, then floored. The
microsecond step absorbs binary floating point (a clock that moved 1.001 s
reads 1000.9999999999999 ms; received bytes over a rate of 88.2 bytes/ms); the
floor keeps what was played at or below what was received. After that all
arithmetic is on integers: the estimate lays the elapsed milliseconds over the
items in order, each taking at most its received milliseconds.
"""

from __future__ import annotations

import attrs


def whole_ms(ms: float) -> int:
    """Milliseconds as the ledger counts them: to the nearest microsecond, then floored."""
    return round(ms * 1000) // 1000


@attrs.define
class _Item:
    item_id: str
    received_bytes: int = 0
    acked_ms: int | None = None


@attrs.frozen
class Cut:
    """What to do with one item at a barge-in: truncate to ``played_ms``, or delete when 0."""

    item_id: str
    played_ms: int
    received_ms: int

    @property
    def delete(self) -> bool:
        """Nothing of it was heard: the item is deleted, not truncated."""
        return self.played_ms <= 0


class PlaybackLedger:
    """Audio received and played per item, for one conversation."""

    def __init__(self, bytes_per_ms: float) -> None:
        self._bytes_per_ms = bytes_per_ms
        self._items: dict[str, _Item] = {}
        self._order: dict[str | None, list[str]] = {}  # response id -> item ids in order
        self._started: dict[str | None, float] = {}  # response id -> time of its first delta
        self._item_response: dict[str, str | None] = {}

    def received(self, response_id: str | None, item_id: str | None, n_bytes: int, now: float) -> None:
        """Record an audio delta."""
        if item_id is None:
            return
        item = self._items.get(item_id)
        if item is None:
            item = self._items[item_id] = _Item(item_id)
            self._order.setdefault(response_id, []).append(item_id)
            self._item_response[item_id] = response_id
        self._started.setdefault(response_id, now)
        item.received_bytes += n_bytes

    def played(self, item_id: str, ms: float) -> bool:
        """The application played ``ms`` of this item so far; False for an unknown item."""
        item = self._items.get(item_id)
        if item is None:
            return False
        item.acked_ms = max(item.acked_ms or 0, whole_ms(ms))
        return True

    def received_ms(self, item_id: str) -> int:
        """Milliseconds of audio received for the item."""
        item = self._items.get(item_id)
        return 0 if item is None else whole_ms(item.received_bytes / self._bytes_per_ms)

    def has_audio(self, response_id: str | None) -> bool:
        """True once the response delivered audio."""
        return response_id in self._started

    def first_delta_at(self, response_id: str | None) -> float | None:
        """When the response's first audio delta arrived."""
        return self._started.get(response_id)

    def positions(self, response_id: str | None, now: float) -> list[Cut]:
        """Played and received milliseconds of each item of the response, in playback order."""
        cuts: list[Cut] = []
        elapsed = None
        start = self._started.get(response_id)
        if start is not None:
            elapsed = max(0, whole_ms((now - start) * 1000.0))
        for item_id in self._order.get(response_id, []):
            received = self.received_ms(item_id)
            item = self._items[item_id]
            if item.acked_ms is not None:
                played = item.acked_ms
            elif elapsed is not None:
                played = elapsed
                elapsed = max(0, elapsed - received)
            else:
                played = 0
            cuts.append(Cut(item_id=item_id, played_ms=max(0, min(played, received)), received_ms=received))
        return cuts

    def still_playing(self, response_id: str | None, now: float) -> bool:
        """True while some received audio of the response has not been played yet."""
        return any(c.played_ms < c.received_ms for c in self.positions(response_id, now))

    def cuts(self, response_id: str | None, now: float) -> list[Cut]:
        """Items of the response the user did not hear in full: where to truncate, what to delete."""
        return [c for c in self.positions(response_id, now) if c.played_ms < c.received_ms]

    def forget(self, response_id: str | None) -> None:
        """Drop a response's records (its audio is over or cut)."""
        for item_id in self._order.pop(response_id, []):
            self._items.pop(item_id, None)
            self._item_response.pop(item_id, None)
        self._started.pop(response_id, None)

    def response_of(self, item_id: str) -> str | None:
        """The response an item belongs to."""
        return self._item_response.get(item_id)
