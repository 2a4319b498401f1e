"""User-facing events, delivered to callbacks (``@session.on(...)``) and ``session.events()``.

The classes live with the core that produces them (:mod:`engine.core.events`);
this module is their public name.
"""

from __future__ import annotations

from engine.core.events import *  # noqa: F403
from engine.core.events import __all__ as _core

__all__ = [name for name in _core if name not in ("Phase", "State")]
