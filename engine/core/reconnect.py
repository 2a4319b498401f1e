"""When to reconnect and how long to wait: a pure policy, tested on a fake clock.

The runtime asks :meth:`ReconnectPolicy.decide` after each failed or dropped
socket; the answer is either "give up" (with the reason) or "retry after this
many seconds". Randomness (the jitter) is an input, so the schedule is
reproducible in tests.
"""

from __future__ import annotations

from typing import Any

import attrs

from engine.errors import HandshakeError


@attrs.frozen
class Decision:
    """Retry after ``delay`` seconds, or give up (``delay is None``) because of ``reason``."""

    delay: float | None
    reason: str = ""

    @property
    def retry(self) -> bool:
        """True when another attempt should be made."""
        return self.delay is not None


def _non_negative(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value!r}")


@attrs.frozen(kw_only=True)
class ReconnectPolicy:
    """Exponential backoff with jitter, up to ``max_attempts`` consecutive failures.

    Attributes:
        max_attempts: consecutive failed attempts before giving up (0 disables reconnecting).
        initial_delay: wait before the first retry, in seconds.
        multiplier: growth of the wait per further attempt.
        max_delay: the wait never exceeds this.
        jitter: the wait is spread by up to this fraction either way, so that many
            clients dropped together do not return together.
    """

    max_attempts: int = attrs.field(default=6, validator=_non_negative)
    initial_delay: float = attrs.field(default=0.25, validator=_non_negative)
    multiplier: float = attrs.field(default=2.0, validator=_non_negative)
    max_delay: float = attrs.field(default=8.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.25, validator=_non_negative)

    def delay(self, attempt: int, rand: float) -> float:
        """Wait before attempt ``attempt`` (1-based); ``rand`` is uniform in [0, 1)."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** max(0, attempt - 1))
        return max(0.0, base * (1.0 - self.jitter + 2.0 * self.jitter * rand))

    def decide(self, attempt: int, error: BaseException | None, rand: float) -> Decision:
        """Whether attempt ``attempt`` should happen after ``error`` ended the previous one."""
        fatal = fatal_reason(error)
        if fatal:
            return Decision(None, fatal)
        if attempt > self.max_attempts:
            return Decision(None, f"gave up after {self.max_attempts} attempts: {error}")
        return Decision(self.delay(attempt, rand))


def fatal_reason(error: BaseException | None) -> str:
    """Why retrying cannot help, or ``""`` if it might."""
    if isinstance(error, HandshakeError) and error.is_auth_failure:
        return f"the server refused the credentials (HTTP {error.status})"
    if isinstance(error, ValueError):  # a URL or a configuration we must not retry
        return f"invalid configuration: {error}"
    return ""
