"""The assistant's audio per item: what arrived, what the caller heard, and what a barge-in cut.

Three sources, all in the recording: the audio deltas (their length; the
recorder keeps ``audio_bytes`` instead of the audio), the playback
acknowledgements (``audio_played(item_id, ms)``, the caller's speaker saying
how far it got) and the core's ``Interrupted`` (the milliseconds heard when the
user cut in, which is also what the server was told to truncate to).

On the time axis an acknowledged item starts playing at its first
acknowledgement minus the milliseconds it acknowledges, and the heard part
runs to its last acknowledgement or to the cut. The cut part is drawn from the
moment of the cut, as long as the audio that arrived but was never heard (up to
the end of the call; its details say how much there was in all). An
item nobody acknowledged is drawn as received (from its first delta, as long
as its audio), since when it played is unknown.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import attrs

from engine.core import events as ev
from engine.protocol import client as c
from engine.timeline.shapes import Mark, Span


@attrs.define
class _Item:
    first_delta: float
    received_bytes: int = 0
    first_ack: tuple[float, float] | None = None  # (time, ms acknowledged)
    last_ack: tuple[float, float] | None = None
    cut: tuple[float, int | None] | None = None  # (time, ms heard)
    transcript: str = ""
    heard_text: str | None = None


class AssistantAudio:
    """Collects the audio facts of each assistant item as the recording is walked."""

    def __init__(self, bytes_per_ms: float) -> None:
        self.bytes_per_ms = bytes_per_ms
        self.items: dict[str, _Item] = {}

    @classmethod
    def for_config(cls, config: dict[str, Any]) -> AssistantAudio:
        """From the session config's output format (PCM16 at its rate, or 8 kHz G.711)."""
        fmt = ((config.get("audio") or {}).get("output") or {}).get("format") or {}
        kind, rate = fmt.get("type", "audio/pcm"), fmt.get("rate")
        if kind in ("audio/pcmu", "audio/pcma"):
            return cls(8.0)
        return cls((rate if isinstance(rate, int) and rate > 0 else 24000) * 2 / 1000)

    def server_event(self, now: float, event: dict[str, Any], audio_bytes: Any) -> None:
        """A recorded server event; audio deltas count toward their item."""
        if event.get("type") != "response.output_audio.delta":
            return
        item_id = event.get("item_id")
        if not isinstance(item_id, str):
            return
        item = self.items.setdefault(item_id, _Item(first_delta=now))
        item.received_bytes += _length(event.get("delta"), audio_bytes)

    def played(self, now: float, item_id: Any, played_ms: Any) -> None:
        """A playback acknowledgement: ``played_ms`` of ``item_id`` had been played by ``now``."""
        item = self.items.get(item_id) if isinstance(item_id, str) else None
        if item is None or not isinstance(played_ms, int | float):
            return
        if item.first_ack is None:
            item.first_ack = (now, float(played_ms))
        item.last_ack = (now, float(played_ms))

    def event(self, now: float, event: Any) -> None:
        """A core event: a barge-in, a final transcript, an item cut to what was heard."""
        if isinstance(event, ev.Interrupted) and event.item_id in self.items:
            self.items[event.item_id].cut = (now, event.played_ms)
        elif isinstance(event, ev.AssistantTranscript | ev.AssistantText) and event.item_id in self.items:
            self.items[event.item_id].transcript = event.text
        elif isinstance(event, ev.ItemUpdated) and event.item.id in self.items:
            item = self.items[event.item.id]
            if item.cut is not None and event.item.text is not None:
                item.heard_text = event.item.text

    def client_event(self, now: float, event: Any) -> None:
        """What the core told the server to forget: a truncation or a deletion is a cut too.

        ``Interrupted`` names the item the user was hearing; later items of the same
        response that were never heard are deleted, and are cut whole.
        """
        if isinstance(event, c.ConversationItemTruncate | c.ConversationItemDelete):
            item = self.items.get(event.item_id)
            if item is not None and item.cut is None:
                heard = event.audio_end_ms if isinstance(event, c.ConversationItemTruncate) else 0
                item.cut = (now, heard)

    def received_ms(self, item: _Item) -> float:
        """Milliseconds of audio that arrived for ``item``."""
        return item.received_bytes / self.bytes_per_ms

    def spans(self, end: float) -> list[Span]:
        """Heard, cut and unacknowledged spans of every item, in order of arrival."""
        out: list[Span] = []
        for item_id, item in self.items.items():
            received = self.received_ms(item)
            words = f"\n“{item.transcript}”" if item.transcript else ""
            if item.first_ack is not None:
                began = max(item.first_ack[0] - item.first_ack[1] / 1000, item.first_delta)
            else:
                began = item.first_delta
            if item.cut is not None:
                cut_at, heard = item.cut
                heard_ms = float(heard or 0)
                said = f"\nheard: “{item.heard_text}”" if item.heard_text is not None else ""
                if heard_ms > 0:  # an item deleted unheard has no heard part
                    out.append(
                        Span(
                            start=min(began, cut_at),
                            end=cut_at,
                            kind="heard",
                            label=item.heard_text or item_id,
                            detail=f"{item_id}: heard {heard_ms:.0f} ms of {received:.0f} ms{said}",
                        )
                    )
                out.append(
                    Span(
                        start=cut_at,
                        end=min(cut_at + max(received - heard_ms, 0.0) / 1000, max(end, cut_at)),
                        kind="cut",
                        label="cut",
                        detail=f"{item_id}: {max(received - heard_ms, 0):.0f} ms cut, never heard{words}",
                    )
                )
            elif item.last_ack is not None:
                out.append(
                    Span(
                        start=began,
                        end=max(item.last_ack[0], began),
                        kind="heard",
                        label=item.transcript or item_id,
                        detail=f"{item_id}: heard {item.last_ack[1]:.0f} ms of {received:.0f} ms{words}",
                    )
                )
            else:
                out.append(
                    Span(
                        start=began,
                        end=min(began + received / 1000, max(end, began)),
                        kind="received",
                        label=item.transcript or item_id,
                        detail=f"{item_id}: {received:.0f} ms received, playback not acknowledged{words}",
                    )
                )
        return out

    def marks(self) -> list[Mark]:
        """A mark at each barge-in."""
        return [
            Mark(
                t=item.cut[0],
                kind="barge-in",
                label="barge-in",
                detail=f"{item_id}: interrupted after {item.cut[1]} ms heard",
            )
            for item_id, item in self.items.items()
            if item.cut is not None
        ]


def _length(delta: Any, audio_bytes: Any) -> int:
    """Bytes of one delta: the recorded length, else the decoded audio (``record_audio=True``)."""
    if isinstance(audio_bytes, int) and audio_bytes >= 0:
        return audio_bytes
    if isinstance(delta, str) and delta:
        try:
            return len(base64.b64decode(delta, validate=False))
        except (binascii.Error, ValueError):
            return 0
    return 0
