"""The mark ledger: what the caller heard, from the carrier's mark echoes.

Theory of operation: the bridge tells the ledger each time it sends assistant
audio to the carrier (``sent(item_id, ms)``), and asks it for a mark name after
a chunk or a few (``mark()``). The name stands for the position, in
milliseconds of each item, of everything sent before it. The carrier echoes a
mark when the audio queued before it has played (Twilio and Telnyx both do; see
docs/carriers.md), so an echo maps back to ``(item_id, ms played)`` for the
playback ledger (``session.audio_played``).

``clear`` makes the carrier drop the audio it holds *and* echo the marks it
dropped at once: those echoes do not mean "played". ``clear()`` therefore
forgets every pending mark (their echoes are then ignored) and freezes the
items sent so far at what was last acknowledged, so later audio of the same
item (there should be none) can never be reported as heard.

Pure and synchronous: no clock, no I/O. Names are unique per ledger (one
ledger per call) and short, since they travel in every mark frame.
"""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class Played:
    """The caller heard ``ms`` of item ``item_id`` (cumulative from the item's start)."""

    item_id: str
    ms: int


@attrs.frozen(kw_only=True)
class MarkStatistics:
    """Counters for logs and metrics."""

    pending: int
    sent: int
    echoed: int
    ignored_after_clear: int
    unknown: int


class MarkLedger:
    """Marks sent on one call and what their echoes say was played. See the module docstring."""

    def __init__(self, prefix: str = "m") -> None:
        self._prefix = prefix
        self._seq = 0
        self._sent: dict[str, float] = {}  # item id -> ms of its audio sent so far
        self._since_mark: dict[str, None] = {}  # items with audio since the last mark, in order
        # name -> (sequence number, positions of the items it covers), in send order
        self._pending: dict[str, tuple[int, tuple[tuple[str, int], ...]]] = {}
        self._discarded: set[str] = set()  # names dropped by clear whose echo is still due
        self._settled: set[str] = set()  # names settled by a later mark's echo (theirs came out of order)
        self._played: dict[str, int] = {}  # item id -> ms acknowledged
        self._frozen: set[str] = set()  # items cut by clear
        self._echoed = 0
        self._ignored = 0
        self._unknown = 0

    def sent(self, item_id: str, ms: float) -> None:
        """``ms`` of item ``item_id`` went to the carrier (after the item's earlier audio)."""
        if ms < 0:
            raise ValueError(f"audio duration must be >= 0, got {ms!r}")
        if item_id in self._frozen:
            return
        self._sent[item_id] = self._sent.get(item_id, 0.0) + ms
        self._since_mark[item_id] = None

    def mark(self) -> str | None:
        """A name for the audio sent so far, or None when nothing was sent since the last mark."""
        if not self._since_mark:
            return None
        self._seq += 1
        name = f"{self._prefix}{self._seq}"
        # Floored: a mark never claims a fraction of a millisecond that was not sent.
        self._pending[name] = (self._seq, tuple((item, int(self._sent[item])) for item in self._since_mark))
        self._since_mark.clear()
        return name

    def echoed(self, name: str) -> list[Played]:
        """The carrier echoed ``name``: what it proves was played (empty for a discarded or unknown mark).

        Marks are echoed in the order they were sent; an echo also settles the
        marks sent before it (their audio played first). Positions only grow.
        """
        entry = self._pending.pop(name, None)
        if entry is None:
            if name in self._discarded:
                self._discarded.discard(name)
                self._ignored += 1
            elif name in self._settled:
                self._settled.discard(name)
            else:
                self._unknown += 1
            return []
        self._echoed += 1
        seq, positions = entry
        merged: dict[str, int] = {}
        for other in [n for n, (s, _) in self._pending.items() if s < seq]:
            self._settled.add(other)
            for item, ms in self._pending.pop(other)[1]:
                merged[item] = ms
        for item, ms in positions:
            merged[item] = ms
        out: list[Played] = []
        for item, ms in merged.items():
            if ms > self._played.get(item, -1):
                self._played[item] = ms
                out.append(Played(item_id=item, ms=ms))
        return out

    def clear(self) -> list[str]:
        """The bridge sent ``clear``: forget the pending marks (their echoes will be ignored).

        Returns the names forgotten. Every item sent so far is frozen at what was
        acknowledged, so nothing sent later counts as played for it.
        """
        names = list(self._pending)
        # Every item heard so far is cut: what it played is final.
        self._frozen.update(self._sent)
        self._discarded.update(names)
        self._pending.clear()
        self._since_mark.clear()
        return names

    def played_ms(self, item_id: str) -> int:
        """Milliseconds of the item the carrier acknowledged (0 when none)."""
        return self._played.get(item_id, 0)

    def sent_ms(self, item_id: str) -> float:
        """Milliseconds of the item sent to the carrier."""
        return self._sent.get(item_id, 0.0)

    @property
    def pending(self) -> int:
        """Marks sent and not yet echoed (0 when the caller has heard everything marked)."""
        return len(self._pending)

    def statistics(self) -> MarkStatistics:
        """Pending marks, marks named, echoes counted, echoes ignored after a clear, unknown echoes."""
        return MarkStatistics(
            pending=len(self._pending),
            sent=self._seq,
            echoed=self._echoed,
            ignored_after_clear=self._ignored,
            unknown=self._unknown,
        )
