"""The browser endpoints' access rule: open on loopback, else signed expiring tokens by scope."""

from __future__ import annotations

import pytest

from engine.gateway.access import CALLER, OPERATOR, Access, Refusal, token_of


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def closed(clock: Clock | None = None, **kwargs: object) -> Access:
    return Access(open=False, secret="s3cret-value", clock=clock or Clock(), **kwargs)  # type: ignore[arg-type]


def test_loopback_is_open_without_a_token() -> None:
    access = Access(open=True, secret="x")
    assert access.check(None, CALLER) is None
    assert access.check(None, OPERATOR) is None
    assert access.check("garbage", OPERATOR) is None


def test_missing_bad_and_foreign_tokens_are_401_with_the_reason() -> None:
    access = closed()
    missing = access.check(None, CALLER)
    assert missing == Refusal(401, "a token is required (add ?token=... to the URL)")
    assert access.check("", CALLER) == missing
    bad = access.check("caller.abc.def", CALLER)
    assert bad is not None and bad.status == 401 and "not valid" in bad.reason
    foreign = Access(open=False, secret="another-secret", clock=Clock()).token(CALLER)
    refused = access.check(foreign, CALLER)
    assert refused is not None and refused.status == 401 and "not valid" in refused.reason


def test_a_tampered_scope_is_refused() -> None:
    access = closed()
    token = access.token(CALLER)
    forged = "operator" + token[len("caller") :]
    refused = access.check(forged, OPERATOR)
    assert refused is not None and refused.status == 401


def test_scopes_caller_talks_operator_watches_too() -> None:
    access = closed()
    caller, operator = access.token(CALLER), access.token(OPERATOR)
    assert access.check(caller, CALLER) is None
    assert access.check(operator, CALLER) is None
    assert access.check(operator, OPERATOR) is None
    wrong = access.check(caller, OPERATOR)
    assert wrong == Refusal(403, "a caller token does not grant operator access")


def test_tokens_expire_by_the_injected_clock() -> None:
    clock = Clock()
    access = closed(clock, max_age=60)
    token = access.token(CALLER)
    clock.now += 60
    assert access.check(token, CALLER) is None
    clock.now += 2
    expired = access.check(token, CALLER)
    assert expired == Refusal(401, "the token has expired; ask for a new URL")


def test_the_secret_comes_from_the_environment_and_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINE_GATEWAY_SECRET", "from-the-env-123")
    one, two = Access(open=False, clock=Clock()), Access(open=False, clock=Clock())
    assert one.check(two.token(OPERATOR), OPERATOR) is None  # same secret: same gateway
    assert "from-the-env-123" not in repr(one)
    assert "from-the-env-123" not in one.token(CALLER)
    monkeypatch.delenv("ENGINE_GATEWAY_SECRET")
    three = Access(open=False, clock=Clock())  # generated: tokens of other processes are refused
    refused = three.check(one.token(CALLER), CALLER)
    assert refused is not None and refused.status == 401


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown scope 'admin'"):
        closed().token("admin")
    with pytest.raises(ValueError, match="max_age must be > 0"):
        closed(max_age=0)


def test_token_of_query_then_bearer() -> None:
    assert token_of({"token": "q"}, {"authorization": "Bearer h"}) == "q"
    assert token_of({}, {"authorization": "Bearer h"}) == "h"
    assert token_of({}, {"authorization": "Basic h"}) is None
    assert token_of({}, {"authorization": "Bearer "}) is None
    assert token_of({}, {}) is None


def test_the_start_up_lines_carry_tokens_only_off_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    from urllib.parse import parse_qs, urlsplit

    from engine.gateway.serve import browser_urls

    assert browser_urls(Access(open=True), "127.0.0.1", 8080) == (
        "engine serve: talk to it in the browser at http://127.0.0.1:8080/ "
        "(live calls: http://127.0.0.1:8080/calls)\n"
    )
    monkeypatch.setenv("ENGINE_GATEWAY_SECRET", "printed-never-0987")
    access = Access(open=False, clock=Clock())
    text = browser_urls(access, "0.0.0.0", 8080)
    assert "printed-never-0987" not in text
    talk, calls, expiry = text.splitlines()
    talk_url = urlsplit(talk.split(" at ")[1])
    calls_url = urlsplit(calls.split(" at ")[1])
    assert talk_url.hostname != "0.0.0.0" and talk_url.path == "/" and calls_url.path == "/calls"
    caller = parse_qs(talk_url.query)["token"][0]
    operator = parse_qs(calls_url.query)["token"][0]
    assert access.check(caller, CALLER) is None and access.check(caller, OPERATOR) is not None
    assert access.check(operator, OPERATOR) is None
    assert "expire in 12 h" in expiry
