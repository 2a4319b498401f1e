"""Events the gateway adds to a call's session: delivered to the agent's callbacks like the session's own."""

from __future__ import annotations

import attrs

from engine.core import events as ev


@attrs.frozen(kw_only=True)
class Dtmf(ev.Dtmf):
    """The caller pressed a key (``0``-``9``, ``*``, ``#``, ``A``-``D``) on call ``call_id``.

    Also an :class:`engine.events.Dtmf`: an agent listening for that gets a key
    press whether the carrier or the provider (a SIP call) reported it.
    """

    call_id: str


__all__ = ["Dtmf"]
