"""Audio helpers: decode what the client appends, measure it, synthesise the assistant's voice.

Input audio arrives as base64 in the session's input format: PCM16
little-endian mono at ``rate``, or G.711 (``audio/pcmu``, ``audio/pcma``) at
8 kHz. Everything is turned into 16-bit samples for the voice activity
detector; G.711 is decoded and encoded by the standard codec (:mod:`engine.audio`:
``audioop``, or ``audioop-lts`` from Python 3.13), never by hand. The
assistant "speaks" a quiet 200 Hz tone shaped into 60 ms syllables: one
cached chunk per format, so streaming costs nothing.
"""

from __future__ import annotations

import array
import base64
import binascii
import math
import sys
from functools import cache

from engine.audio import G711_DECODE, G711_ENCODE, g711_decode, g711_encode

CHUNK_MS = 60
"""Duration of one ``response.output_audio.delta``."""
TONE_HZ = 200
"""Pitch of the synthetic voice (a whole number of periods fits in every chunk)."""
TONE_AMPLITUDE = 800
"""Peak amplitude of the synthetic voice, out of 32767: quiet, under the VAD threshold."""
FULL_SCALE = 32768.0


def decode_base64(data: str) -> bytes:
    """Strict base64 decoding. Raises ``ValueError`` on anything that is not base64."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64: {exc}") from None


def pcm16_to_samples(data: bytes) -> array.array[int]:
    """Little-endian 16-bit PCM bytes (even length) to samples."""
    samples = array.array("h")
    samples.frombytes(data)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def samples_to_pcm16(samples: array.array[int]) -> bytes:
    """Samples to little-endian 16-bit PCM bytes."""
    if sys.byteorder == "big":
        samples = array.array("h", samples)
        samples.byteswap()
    return samples.tobytes()


class InputDecoder:
    """Turns appended bytes into samples, carrying an odd trailing PCM byte to the next append."""

    def __init__(self, format_type: str) -> None:
        self.format_type = format_type
        self._carry = b""

    def decode(self, data: bytes) -> array.array[int]:
        """Samples of ``data`` (plus any byte carried over from the previous call)."""
        if self.format_type in G711_DECODE:
            return g711_decode(self.format_type, data)
        data = self._carry + data
        cut = len(data) - len(data) % 2
        self._carry = data[cut:]
        return pcm16_to_samples(data[:cut])

    def reset(self) -> None:
        """Forget a carried byte (the buffer was committed or cleared)."""
        self._carry = b""


def sum_squares(samples: array.array[int]) -> float:
    """Sum of squared samples (for RMS over any span)."""
    return float(sum(s * s for s in samples))


def rms(total_squares: float, count: int) -> float:
    """RMS as a fraction of full scale (0.0 to 1.0)."""
    if count <= 0:
        return 0.0
    return math.sqrt(total_squares / count) / FULL_SCALE


def loudness_label(level: float) -> str:
    """A word for an RMS level, used in the deterministic transcripts."""
    if level >= 0.1:
        return "loud"
    if level >= 0.03:
        return "normal"
    return "quiet"


@cache
def voice_chunk(format_type: str, rate: int) -> str:
    """One base64 chunk (``CHUNK_MS``) of the synthetic voice in a format, cached."""
    n = rate * CHUNK_MS // 1000
    samples = array.array(
        "h",
        (
            int(
                TONE_AMPLITUDE
                * 0.5
                * (1 - math.cos(2 * math.pi * i / n))  # a syllable-like swell
                * math.sin(2 * math.pi * TONE_HZ * i / rate)
            )
            for i in range(n)
        ),
    )
    raw = g711_encode(format_type, samples) if format_type in G711_ENCODE else samples_to_pcm16(samples)
    return base64.b64encode(raw).decode("ascii")
