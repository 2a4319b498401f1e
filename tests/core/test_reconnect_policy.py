"""The reconnect policy: backoff timing, attempt limit, fatal versus retry. No clock, no sleeping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.reconnect import ReconnectPolicy, fatal_reason
from engine.errors import ConnectionClosed, HandshakeError, TransportError
from engine.protocol.config import ConfigError


def test_delays_grow_exponentially_and_are_capped() -> None:
    policy = ReconnectPolicy(initial_delay=0.5, multiplier=2.0, max_delay=4.0, jitter=0.0, max_attempts=10)
    assert [policy.delay(n, 0.3) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


@given(attempt=st.integers(1, 30), rand=st.floats(0.0, 0.999999))
def test_jitter_stays_within_its_band(attempt: int, rand: float) -> None:
    policy = ReconnectPolicy(initial_delay=0.25, multiplier=2.0, max_delay=8.0, jitter=0.25)
    base = min(8.0, 0.25 * 2.0 ** (attempt - 1))
    delay = policy.delay(attempt, rand)
    assert base * 0.75 <= delay <= base * 1.25


def test_jitter_spreads_clients_dropped_together() -> None:
    policy = ReconnectPolicy(initial_delay=1.0, jitter=0.25)
    assert policy.delay(1, 0.0) == pytest.approx(0.75)
    assert policy.delay(1, 0.5) == pytest.approx(1.0)
    assert policy.delay(1, 0.99) == pytest.approx(1.245)


def test_attempt_limit() -> None:
    policy = ReconnectPolicy(max_attempts=3, jitter=0.0, initial_delay=0.1)
    drop = ConnectionClosed("dropped", code=1006)
    assert [policy.decide(n, drop, 0.5).retry for n in (1, 2, 3, 4, 5)] == [True, True, True, False, False]
    assert "3 attempts" in policy.decide(4, drop, 0.5).reason


def test_zero_attempts_disables_reconnecting() -> None:
    assert not ReconnectPolicy(max_attempts=0).decide(1, ConnectionClosed("x", code=1006), 0.1).retry


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_fatal(status: int) -> None:
    decision = ReconnectPolicy().decide(1, HandshakeError("refused", status=status), 0.5)
    assert not decision.retry
    assert str(status) in decision.reason


@pytest.mark.parametrize(
    "error",
    [
        HandshakeError("busy", status=503),
        TransportError("network unreachable"),
        ConnectionClosed("abnormal", code=1006),
        ConnectionClosed("keep-alive timeout", code=1011),
        None,
    ],
)
def test_transient_failures_are_retried(error: BaseException | None) -> None:
    assert fatal_reason(error) == ""
    assert ReconnectPolicy().decide(1, error, 0.5).retry


def test_invalid_configuration_is_fatal() -> None:
    assert not ReconnectPolicy().decide(1, ConfigError("session.voice", "bad"), 0.5).retry
    assert not ReconnectPolicy().decide(1, ValueError("ws:// refused for example.com"), 0.5).retry


def test_negative_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="initial_delay"):
        ReconnectPolicy(initial_delay=-1)


def test_only_a_socket_that_stayed_ready_for_healthy_after_starts_a_new_run() -> None:
    policy = ReconnectPolicy(healthy_after=5.0)
    assert policy.next_attempt(0, None) == 1  # the first connect failed
    assert policy.next_attempt(2, None) == 3  # never ready: one more failure
    assert policy.next_attempt(2, 0.1) == 3  # ready, then dropped at once: one more failure too
    assert policy.next_attempt(2, 4.99) == 3
    assert policy.next_attempt(6, 5.0) == 1  # stayed healthy: a new run


def test_a_session_dying_right_after_ready_backs_off_then_gives_up_saying_so() -> None:
    # The schedule the runtime walks through when every socket dies 0.1 s after ready.
    policy = ReconnectPolicy(max_attempts=3, initial_delay=0.1, jitter=0.0, healthy_after=5.0)
    drop = ConnectionClosed("connection closed with code 1009 (message too big)", code=1009)
    attempt, delays = 0, []
    for ready_drops in range(1, 10):
        attempt = policy.next_attempt(attempt, 0.1)
        decision = policy.decide(attempt, drop, 0.5, ready_drops=ready_drops)
        if not decision.retry:
            break
        delays.append(decision.delay)
    assert delays == [0.1, 0.2, 0.4]
    assert "kept dropping right after it was ready (4 of them within 5s of ready)" in decision.reason
    assert "1009 (message too big)" in decision.reason


def test_giving_up_without_ready_drops_names_the_last_error() -> None:
    reason = ReconnectPolicy(max_attempts=1).decide(2, TransportError("refused"), 0.5).reason
    assert reason == "gave up after 1 attempts: refused"
    assert "ended" in ReconnectPolicy(max_attempts=0).decide(1, None, 0.5).reason
