"""G.711 (μ-law ``audio/pcmu``, A-law ``audio/pcma``) by the standard codec, for whoever needs samples.

``audioop`` is the standard library's G.711 codec up to Python 3.12 (deprecated
there, still correct); from 3.13 the ``audioop-lts`` package provides the same
module. Nothing here is hand-written: the local server's voice activity
detector and synthetic voice, and the gateway's apology tone, all use it.
Phone audio itself is never converted (it passes through as G.711).
"""

from __future__ import annotations

import array
import sys
import warnings
from collections.abc import Callable

if sys.version_info >= (3, 13):  # removed from the standard library; the audioop-lts package
    import audioop
else:
    with warnings.catch_warnings():  # deprecated since 3.11, still the standard G.711 codec here
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop

G711_DECODE: dict[str, Callable[[bytes, int], bytes]] = {
    "audio/pcmu": audioop.ulaw2lin,
    "audio/pcma": audioop.alaw2lin,
}
G711_ENCODE: dict[str, Callable[[bytes, int], bytes]] = {
    "audio/pcmu": audioop.lin2ulaw,
    "audio/pcma": audioop.lin2alaw,
}


def g711_decode(format_type: str, data: bytes) -> array.array[int]:
    """G.711 bytes (``audio/pcmu`` or ``audio/pcma``) to 16-bit samples, one per byte."""
    samples = array.array("h")
    samples.frombytes(G711_DECODE[format_type](data, 2))  # native byte order, as array wants
    return samples


def g711_encode(format_type: str, samples: array.array[int]) -> bytes:
    """16-bit samples to G.711 bytes (``audio/pcmu`` or ``audio/pcma``), one byte per sample."""
    return G711_ENCODE[format_type](samples.tobytes(), 2)
