"""When to reconnect and how long to wait: a pure policy, tested on a fake clock.

The runtime asks :meth:`ReconnectPolicy.decide` after each failed or dropped
socket; the answer is either "give up" (with the reason) or "retry after this
many seconds". Randomness (the jitter) and the socket's uptime are inputs, so
the schedule is reproducible in tests.

A *failure run* is the attempts since the last socket that stayed healthy:
a socket only ends the run once it has been ready for ``healthy_after``
seconds (:meth:`ReconnectPolicy.next_attempt`). A server that drops every
session right after it is ready therefore backs off like one that refuses
to connect, and past ``max_attempts`` the session ends with a reason that
says so, instead of reconnecting at the first delay forever.
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
        healthy_after: seconds a socket must stay ready before its drop starts a new
            failure run; a socket that dies sooner counts as one more failed attempt.
    """

    max_attempts: int = attrs.field(default=6, validator=_non_negative)
    initial_delay: float = attrs.field(default=0.25, validator=_non_negative)
    multiplier: float = attrs.field(default=2.0, validator=_non_negative)
    max_delay: float = attrs.field(default=8.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.25, validator=_non_negative)
    healthy_after: float = attrs.field(default=10.0, validator=_non_negative)

    def delay(self, attempt: int, rand: float) -> float:
        """Wait before attempt ``attempt`` (1-based); ``rand`` is uniform in [0, 1)."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** max(0, attempt - 1))
        return max(0.0, base * (1.0 - self.jitter + 2.0 * self.jitter * rand))

    def next_attempt(self, attempt: int, uptime: float | None) -> int:
        """The number of the attempt after a socket that was attempt ``attempt``.

        ``uptime`` is how long that socket was ready (``None``: it never was). Only a
        socket that stayed ready for ``healthy_after`` seconds starts a new run.
        """
        if uptime is not None and uptime >= self.healthy_after:
            return 1
        return attempt + 1

    def decide(
        self, attempt: int, error: BaseException | None, rand: float, *, ready_drops: int = 0
    ) -> Decision:
        """Whether attempt ``attempt`` should happen after ``error`` ended the previous one.

        ``ready_drops`` is how many sockets of this failure run reached ready and
        then dropped within ``healthy_after``; it only shapes the reason for giving up.
        """
        fatal = fatal_reason(error)
        if fatal:
            return Decision(None, fatal)
        if attempt > self.max_attempts:
            cause = describe(error)
            if ready_drops:
                return Decision(
                    None,
                    f"gave up after {self.max_attempts} attempts: the session kept dropping right "
                    f"after it was ready ({ready_drops} of them within {self.healthy_after:g}s of "
                    f"ready); last: {cause}",
                )
            return Decision(None, f"gave up after {self.max_attempts} attempts: {cause}")
        return Decision(self.delay(attempt, rand))


def describe(error: BaseException | None) -> str:
    """The cause of a failed attempt in a few words."""
    if error is None:
        return "the connection ended"
    return str(error) or type(error).__name__


def fatal_reason(error: BaseException | None) -> str:
    """Why retrying cannot help, or ``""`` if it might."""
    if isinstance(error, HandshakeError) and error.is_auth_failure:
        return f"the server refused the credentials (HTTP {error.status})"
    if isinstance(error, ValueError):  # a URL or a configuration we must not retry
        return f"invalid configuration: {error}"
    return ""
