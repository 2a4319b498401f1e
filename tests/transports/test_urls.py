"""URL policy, log redaction and text decoding (synchronous)."""

from __future__ import annotations

import pytest

from engine.errors import TransportError
from engine.transports import TransportSettings, check_url, redact_headers, redact_url
from engine.transports.base import as_text

INSECURE_OK = TransportSettings(allow_insecure=True)


@pytest.mark.parametrize(
    ("url", "settings", "allowed"),
    [
        ("wss://api.example.com/v1/realtime?model=m", None, True),
        ("wss://api.example.com/v1/realtime", INSECURE_OK, True),
        ("WSS://API.EXAMPLE.COM/", None, True),
        ("ws://127.0.0.1:8080/v1", None, True),
        ("ws://127.8.9.10/", None, True),
        ("ws://localhost:9000/", None, True),
        ("ws://LOCALHOST/", None, True),
        ("ws://[::1]:9000/", None, True),
        ("ws://example.com/v1", None, False),
        ("ws://10.0.0.5/", None, False),
        ("ws://localhost.example.com/", None, False),
        ("ws://example.com/v1", INSECURE_OK, True),
        ("http://127.0.0.1/", None, False),
        ("https://api.example.com/", INSECURE_OK, False),
        ("api.example.com/v1", None, False),
        ("wss:///no-host", None, False),
    ],
)
def test_check_url(url: str, settings: TransportSettings | None, allowed: bool) -> None:
    if allowed:
        check_url(url, settings)
    else:
        with pytest.raises(ValueError):
            check_url(url, settings)


def test_check_url_error_hides_the_key() -> None:
    with pytest.raises(ValueError, match="allow_insecure") as info:
        check_url("ws://example.com/v1?key=s3cret")
    assert "s3cret" not in str(info.value)


def test_redact_headers() -> None:
    headers = {
        "authorization": "Bearer a",
        "AUTHORIZATION": "Bearer b",
        "X-Api-Key": "k",
        "api-key": "k2",
        "X-Auth-Token": "t",
        "OpenAI-Beta": "realtime=v1",
        "Content-Type": "json",
    }
    assert redact_headers(headers) == {
        "authorization": "***",
        "AUTHORIZATION": "***",
        "X-Api-Key": "***",
        "api-key": "***",
        "X-Auth-Token": "***",
        "OpenAI-Beta": "realtime=v1",
        "Content-Type": "json",
    }
    assert headers["authorization"] == "Bearer a"  # the input is not touched
    assert redact_headers(None) == {}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "wss://h/v1?model=m&key=s1&api_key=s2&token=s3",
            "wss://h/v1?model=m&key=***&api_key=***&token=***",
        ),
        ("wss://h/v1?KEY=s1&monkey=ok", "wss://h/v1?KEY=***&monkey=ok"),
        ("wss://h/v1?model=a%20b&flag", "wss://h/v1?model=a%20b&flag"),
        ("/v1/realtime?token=s", "/v1/realtime?token=***"),
        ("wss://user:pw@h/v1", "wss://user:***@h/v1"),
        ("wss://h/v1", "wss://h/v1"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_as_text_decodes_utf8_binary_and_refuses_the_rest() -> None:
    assert as_text("é") == "é"
    assert as_text("é".encode()) == "é"
    with pytest.raises(TransportError, match="not UTF-8"):
        as_text(b"\xff\xfe")
