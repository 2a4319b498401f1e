"""An energy voice activity detector over the received audio timeline.

Theory of operation: the input is cut into 20 ms frames; a frame is *voiced*
when its RMS reaches the threshold. ``START_FRAMES`` voiced frames in a row
start speech, dated at the first of them; ``silence_ms`` without a voiced
frame stops it, dated at the end of the last voiced frame. Both times are
milliseconds of audio received since the connection opened (GA's
``audio_start_ms`` / ``audio_end_ms``), so the detector needs no clock: it is
driven by the audio alone and is exact to one frame.

GA documents that its times include ``prefix_padding_ms`` and the silence;
this detector reports the true speech bounds instead, which is what a test
(or a latency measurement) wants to compare against.
"""

from __future__ import annotations

import array

import attrs

from engine.server.audio import rms, sum_squares

FRAME_MS = 20
START_FRAMES = 3
"""Voiced frames in a row that make speech (60 ms)."""
DEFAULT_THRESHOLD = 0.02
"""RMS, as a fraction of full scale (about -34 dBFS), above which a frame is voiced."""
DEFAULT_SILENCE_MS = 500


@attrs.frozen(kw_only=True)
class SpeechStart:
    """Speech began at ``start_ms`` on the audio timeline."""

    start_ms: int


@attrs.frozen(kw_only=True)
class SpeechStop:
    """Speech that began at ``start_ms`` ended at ``end_ms``; ``level`` is its RMS."""

    start_ms: int
    end_ms: int
    level: float


VadEvent = SpeechStart | SpeechStop


class EnergyVad:
    """Frame-energy speech detection at one sample rate; see the module docstring.

    Args:
        rate: samples per second of the input.
        threshold: frame RMS (0.0 to 1.0) that counts as voiced.
        silence_ms: silence that ends speech.
        origin_ms: where this detector's timeline starts (when the rate changes
            mid-session a new detector continues the old one's timeline).
    """

    def __init__(
        self,
        rate: int,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        silence_ms: int = DEFAULT_SILENCE_MS,
        origin_ms: float = 0.0,
    ) -> None:
        self.rate = rate
        self.threshold = threshold
        self.silence_ms = silence_ms
        self._origin_ms = origin_ms
        self._frame_len = max(1, rate * FRAME_MS // 1000)
        self._pending = array.array("h")
        self._frame_start = 0  # sample index of the pending frame's start
        self._run = 0  # voiced frames in a row before speech
        self._candidate = 0  # sample index of the first of them
        self._candidate_energy = 0.0
        self.in_speech = False
        self._start = 0
        self._last_voiced_end = 0
        self._silence = 0  # samples of silence since the last voiced frame
        self._energy = 0.0  # of the voiced frames of the current speech
        self._voiced = 0  # samples in those frames

    @property
    def position_ms(self) -> float:
        """Milliseconds of audio received, on the session timeline."""
        return self._ms(self._frame_start + len(self._pending))

    def _ms(self, samples: int) -> float:
        return self._origin_ms + samples * 1000 / self.rate

    def feed(self, samples: array.array[int]) -> list[VadEvent]:
        """Add samples; return the speech starts and stops they complete, in order."""
        self._pending.extend(samples)
        out: list[VadEvent] = []
        n = self._frame_len
        done = 0
        while len(self._pending) - done >= n:
            event = self._frame(self._pending[done : done + n])
            self._frame_start += n
            done += n
            if event is not None:
                out.append(event)
        del self._pending[:done]
        return out

    def _frame(self, frame: array.array[int]) -> VadEvent | None:
        energy = sum_squares(frame)
        voiced = rms(energy, len(frame)) >= self.threshold
        start, end = self._frame_start, self._frame_start + len(frame)
        if not self.in_speech:
            if not voiced:
                self._run = 0
                return None
            if self._run == 0:
                self._candidate, self._candidate_energy = start, 0.0
            self._run += 1
            self._candidate_energy += energy
            if self._run < START_FRAMES:
                return None
            self.in_speech = True
            self._start, self._last_voiced_end, self._silence = self._candidate, end, 0
            self._energy, self._voiced = self._candidate_energy, end - self._candidate
            return SpeechStart(start_ms=round(self._ms(self._start)))
        if voiced:
            self._last_voiced_end, self._silence = end, 0
            self._energy += energy
            self._voiced += len(frame)
            return None
        self._silence += len(frame)
        if self._silence * 1000 < self.silence_ms * self.rate:
            return None
        self.in_speech, self._run = False, 0
        return SpeechStop(
            start_ms=round(self._ms(self._start)),
            end_ms=round(self._ms(self._last_voiced_end)),
            level=rms(self._energy, self._voiced),
        )

    def reset(self) -> None:
        """Forget any speech in progress (the buffer was cleared or committed by hand)."""
        self.in_speech, self._run = False, 0
