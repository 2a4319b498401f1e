"""What the transport edge turns peers' words into: close codes named, echoed secrets redacted."""

from __future__ import annotations

from engine.redaction import Secret
from engine.transports.base import cause_of, closed, refused

KEY = "sk-EDGE-51c0ffee"


def test_a_close_names_its_code_and_carries_its_reason() -> None:
    error = closed(1009, "message too big for us")
    assert str(error) == "connection closed with code 1009 (message too big): message too big for us"
    assert (error.code, error.reason) == (1009, "message too big for us")
    assert str(closed(4000)) == "connection closed with code 4000"
    assert closed(None).code == 1006


def test_a_close_reason_or_an_http_body_that_echoes_the_key_is_redacted() -> None:
    secret = Secret(KEY)
    echo = closed(1008, f"bad key Bearer {KEY}")
    assert KEY not in str(echo) and KEY not in echo.reason and "***" in echo.reason
    assert KEY not in str(refused(401, f"invalid Authorization header: Basic {KEY}"))
    del secret


def test_a_foreign_exception_holding_the_key_is_not_chained() -> None:
    secret = Secret(KEY)
    assert cause_of(ValueError(f"Illegal header value b'Basic {KEY}'")) is None
    plain = OSError("connection refused")
    assert cause_of(plain) is plain
    del secret
