"""Token usage by modality and cache, per turn and per call, and what it cost.

Fed by the session's ``TurnMetrics`` (each carries its turn's usage, summed
over the turn's responses, and its ``cost`` when the provider profile has a
price table). Pure: no OpenTelemetry needed.
"""

from __future__ import annotations

import collections

import attrs

from engine.core.metrics import TurnMetrics, token_counts

KINDS = tuple(f"{d}_{m}" for d in ("input", "cached", "output") for m in ("text", "audio", "image"))
"""The token kinds counted: ``input_*`` (uncached), ``cached_*`` (cached input) and ``output_*``."""


@attrs.frozen(kw_only=True)
class TurnUsage:
    """One turn's tokens by kind (see :data:`KINDS`) and cost (``None``: no price table)."""

    turn: int
    tokens: dict[str, int]
    cost: float | None = None

    @property
    def input_tokens(self) -> int:
        """Input tokens, cached or not."""
        return sum(n for k, n in self.tokens.items() if not k.startswith("output_"))

    @property
    def output_tokens(self) -> int:
        """Output tokens."""
        return sum(n for k, n in self.tokens.items() if k.startswith("output_"))


RECENT_TURNS = 100
"""Turns whose own usage a ledger keeps (the call's sums count every turn): memory stays flat."""


@attrs.frozen(kw_only=True)
class CallUsage:
    """A call's usage: the sums over every turn, and the most recent turns' own figures.

    Attributes:
        turns: the last :data:`RECENT_TURNS` turns, oldest first.
        tokens: tokens by kind over the whole call.
        cost: the call's cost so far (``None`` when no turn was priced).
        turn_count: every turn counted, including those no longer in ``turns``.
    """

    turns: tuple[TurnUsage, ...] = ()
    tokens: dict[str, int] = attrs.field(factory=dict)
    cost: float | None = None
    turn_count: int = 0

    @property
    def input_tokens(self) -> int:
        """Input tokens over the call, cached or not."""
        return sum(n for k, n in self.tokens.items() if not k.startswith("output_"))

    @property
    def output_tokens(self) -> int:
        """Output tokens over the call."""
        return sum(n for k, n in self.tokens.items() if k.startswith("output_"))


class UsageLedger:
    """Adds each turn's usage as its ``TurnMetrics`` arrives: running sums, and the recent turns."""

    def __init__(self, recent: int = RECENT_TURNS) -> None:
        self._turns: collections.deque[TurnUsage] = collections.deque(maxlen=recent)
        self._tokens: dict[str, int] = {}
        self._cost: float | None = None
        self._count = 0

    def add(self, metrics: TurnMetrics) -> None:
        """Count one finished turn (a sync session callback for ``TurnMetrics``)."""
        tokens = token_counts(metrics.usage) if metrics.usage is not None else {}
        self._turns.append(TurnUsage(turn=metrics.turn, tokens=tokens, cost=metrics.cost))
        for kind, n in tokens.items():
            self._tokens[kind] = self._tokens.get(kind, 0) + n
        if metrics.cost is not None:
            self._cost = (self._cost or 0.0) + metrics.cost
        self._count += 1

    def usage(self) -> CallUsage:
        """The call's usage so far (a snapshot)."""
        return CallUsage(
            turns=tuple(self._turns), tokens=dict(self._tokens), cost=self._cost, turn_count=self._count
        )
