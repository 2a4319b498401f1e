"""Events the gateway adds to a call's session: delivered to the agent's callbacks like the session's own."""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class Dtmf:
    """The caller pressed a key (``0``-``9``, ``*``, ``#``, ``A``-``D``) on call ``call_id``."""

    digit: str
    call_id: str


__all__ = ["Dtmf"]
