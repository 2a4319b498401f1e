"""The two shapes a timeline is made of: spans (intervals) and marks (instants)."""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class Span:
    """Something that lasted from ``start`` to ``end``; ``kind`` names its look (a CSS class)."""

    start: float
    end: float
    kind: str
    label: str
    detail: str = ""


@attrs.frozen(kw_only=True)
class Mark:
    """Something that happened at ``t``."""

    t: float
    kind: str
    label: str
    detail: str = ""
