"""Token usage by modality and cache, per turn and per call, and what it cost.

Fed by the session's ``TurnMetrics`` (each carries its turn's usage, summed
over the turn's responses, and its ``cost`` when the provider profile has a
price table). Pure: no OpenTelemetry needed.
"""

from __future__ import annotations

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


@attrs.frozen(kw_only=True)
class CallUsage:
    """A call's usage: its turns', and their sums."""

    turns: tuple[TurnUsage, ...] = ()

    @property
    def tokens(self) -> dict[str, int]:
        """Tokens by kind over the call."""
        out: dict[str, int] = {}
        for turn in self.turns:
            for kind, n in turn.tokens.items():
                out[kind] = out.get(kind, 0) + n
        return out

    @property
    def input_tokens(self) -> int:
        """Input tokens over the call, cached or not."""
        return sum(t.input_tokens for t in self.turns)

    @property
    def output_tokens(self) -> int:
        """Output tokens over the call."""
        return sum(t.output_tokens for t in self.turns)

    @property
    def cost(self) -> float | None:
        """The call's cost so far (``None`` when no turn was priced)."""
        costs = [t.cost for t in self.turns if t.cost is not None]
        return sum(costs) if costs else None


class UsageLedger:
    """Adds each turn's usage as its ``TurnMetrics`` arrives."""

    def __init__(self) -> None:
        self._turns: list[TurnUsage] = []

    def add(self, metrics: TurnMetrics) -> None:
        """Count one finished turn (a sync session callback for ``TurnMetrics``)."""
        tokens = token_counts(metrics.usage) if metrics.usage is not None else {}
        self._turns.append(TurnUsage(turn=metrics.turn, tokens=tokens, cost=metrics.cost))

    def usage(self) -> CallUsage:
        """The call's usage so far (a snapshot)."""
        return CallUsage(turns=tuple(self._turns))
