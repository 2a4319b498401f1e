"""Telnyx's Ed25519 webhook signature, and the stream token that guards its unsigned upgrade.

The pure tests sign with a key pair made here (``cryptography``'s
Ed25519PrivateKey) the way docs/carriers.md describes Telnyx's scheme:
``timestamp|raw body``, base64 signature, timestamp in Unix seconds.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import xml.etree.ElementTree as ET

import anyio
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import engine
from engine.gateway.access import Access
from engine.gateway.carriers.base import SignedRequest
from engine.gateway.carriers.telnyx_signature import TOLERANCE, TelnyxSignature
from engine.gateway.stream_tokens import SALT, StreamTokens
from engine.transports import connect
from tests.gateway.serving import Phone, http, running_gateway

NOW = 1_750_000_000.0
BODY = json.dumps({"data": {"event_type": "call.initiated", "payload": {"call_control_id": "v3:1"}}}).encode()
PRIVATE = Ed25519PrivateKey.generate()


def public_key(private: Ed25519PrivateKey = PRIVATE, encoding: Encoding = Encoding.Raw) -> str:
    form = PublicFormat.Raw if encoding is Encoding.Raw else PublicFormat.SubjectPublicKeyInfo
    return base64.b64encode(private.public_key().public_bytes(encoding, form)).decode()


def sign(body: bytes, timestamp: str, private: Ed25519PrivateKey = PRIVATE) -> str:
    return base64.b64encode(private.sign(timestamp.encode() + b"|" + body)).decode()


def headers(body: bytes, timestamp: float, private: Ed25519PrivateKey = PRIVATE) -> dict[str, str]:
    stamp = str(int(timestamp))
    return {"telnyx-signature-ed25519": sign(body, stamp, private), "telnyx-timestamp": stamp}


def webhook(body: bytes, given: dict[str, str], now: float = NOW) -> SignedRequest:
    return SignedRequest(
        url="https://gw.example.com/telnyx/voice", headers=given, body=body, form={}, now=now
    )


CHECK = TelnyxSignature(public_key())


def test_a_signed_webhook_passes_in_either_key_form() -> None:
    assert CHECK.check(webhook(BODY, headers(BODY, NOW)))
    assert TelnyxSignature(public_key(encoding=Encoding.DER)).check(webhook(BODY, headers(BODY, NOW)))


@pytest.mark.parametrize(
    ("body", "given"),
    [
        pytest.param(BODY + b" ", headers(BODY, NOW), id="tampered body"),
        pytest.param(BODY.replace(b"initiated", b"answered"), headers(BODY, NOW), id="another body"),
        pytest.param(BODY, headers(BODY, NOW, Ed25519PrivateKey.generate()), id="another key"),
        pytest.param(BODY, {}, id="no headers"),
        pytest.param(BODY, {"telnyx-timestamp": str(int(NOW))}, id="no signature"),
        pytest.param(BODY, {"telnyx-signature-ed25519": sign(BODY, str(int(NOW)))}, id="no timestamp"),
        pytest.param(
            BODY, {**headers(BODY, NOW), "telnyx-signature-ed25519": "%%not base64%%"}, id="bad base64"
        ),
        pytest.param(
            BODY,
            {**headers(BODY, NOW), "telnyx-signature-ed25519": base64.b64encode(b"x" * 63).decode()},
            id="short signature",
        ),
        pytest.param(BODY, {**headers(BODY, NOW), "telnyx-timestamp": "soon"}, id="garbled timestamp"),
        pytest.param(
            BODY, {**headers(BODY, NOW), "telnyx-timestamp": str(int(NOW) + 1)}, id="timestamp not signed"
        ),
        pytest.param(BODY, headers(BODY, NOW - TOLERANCE - 1), id="stale"),
        pytest.param(BODY, headers(BODY, NOW + TOLERANCE + 1), id="from the future"),
    ],
)
def test_anything_else_is_refused(body: bytes, given: dict[str, str]) -> None:
    assert not CHECK.check(webhook(body, given))


def test_the_tolerance_holds_both_ways_up_to_its_edge() -> None:
    for offset in (-TOLERANCE, -1.0, 0.0, TOLERANCE):
        assert CHECK.check(webhook(BODY, headers(BODY, NOW + offset)))
    narrow = TelnyxSignature(public_key(), tolerance=10)
    assert not narrow.check(webhook(BODY, headers(BODY, NOW - 11)))


def test_an_upgrade_is_never_signed_by_telnyx() -> None:
    upgrade = SignedRequest(
        url="wss://gw/telnyx/stream", headers=headers(b"", NOW), body=b"", form=None, now=NOW
    )
    assert upgrade.upgrade and not CHECK.check(upgrade)


@pytest.mark.parametrize(
    ("key", "match"),
    [
        ("", "non-empty"),
        ("not base64!", "not valid base64"),
        (base64.b64encode(b"k" * 31).decode(), "32-byte Ed25519 key"),
        (base64.b64encode(b"\x30" * 44).decode(), "got 44 bytes"),
    ],
)
def test_a_bad_key_is_refused_at_construction(key: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as refused:
        TelnyxSignature(key)
    assert key == "" or key not in str(refused.value)


def test_the_repr_is_short() -> None:
    key = public_key()
    assert repr(CHECK) == f"<TelnyxSignature key={key[:8]}… tolerance=300s>"


def test_stream_tokens_are_for_one_carrier_and_expire() -> None:
    clock = [NOW]
    tokens = StreamTokens(Access(open=True, secret="s1", clock=lambda: clock[0]).signer(SALT), max_age=60)
    token = tokens.issue("telnyx")
    assert tokens.valid(token, "telnyx") and not tokens.valid(token, "twilio")
    assert not tokens.valid(None, "telnyx") and not tokens.valid("telnyx.bad.sig", "telnyx")
    # Another gateway with the same secret accepts it (replicas); another secret does not.
    same = StreamTokens(Access(open=True, secret="s1", clock=lambda: clock[0]).signer(SALT))
    other = StreamTokens(Access(open=True, secret="s2", clock=lambda: clock[0]).signer(SALT))
    assert same.valid(token, "telnyx") and not other.valid(token, "telnyx")
    # A browser token signed with the same secret is no stream token (another salt).
    browser = Access(open=False, secret="s1", clock=lambda: clock[0]).token("operator")
    assert not tokens.valid(browser, "telnyx")
    clock[0] += 61
    assert not tokens.valid(token, "telnyx")


# ------------------------------------------------------------------ end to end

CLIENT_LOGGERS = ("engine.transports", "websockets.client", "trio_websocket")


@pytest.mark.anyio
async def test_a_telnyx_call_needs_a_signed_webhook_and_the_stream_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = public_key()
    with anyio.fail_after(15):
        async with running_gateway(secrets={"telnyx": key}) as served:
            json_headers = {"Content-Type": "application/json"}
            for given in (
                {},
                headers(BODY, time.time(), Ed25519PrivateKey.generate()),
                headers(b"{}", time.time()),
            ):
                status, _, _ = await http(
                    served.port, "POST", "/telnyx/voice", body=BODY, headers={**json_headers, **given}
                )
                assert status == 403
            signed = {**json_headers, **headers(BODY, time.time())}
            status, _, answer = await http(
                served.port, "POST", "/telnyx/voice?agent=sales", body=BODY, headers=signed
            )
            assert status == 200
            (stream,) = ET.fromstring(answer)[0]
            url = stream.attrib["url"]
            prefix = f"ws://127.0.0.1:{served.port}/telnyx/stream/"
            assert url.startswith(prefix)
            token = url[len(prefix) :]
            assert token and "/" not in token and "?" not in token
            settings = engine.TransportSettings(close_timeout=1)
            # Without the token, or with a forged or another carrier's one, the upgrade is refused.
            forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
            for path in ("/telnyx/stream", f"/telnyx/stream/{forged}", "/telnyx/stream/x"):
                with pytest.raises(engine.HandshakeError) as refused:
                    async with connect(served.ws + path, {}, settings):
                        pass
                assert refused.value.status == 403
            assert served.gateway.registry.live == ()
            # With it, the call runs.
            async with connect(url, {}, settings) as transport, anyio.create_task_group() as tg:
                phone = Phone(transport)
                tg.start_soon(phone.run)
                await phone.start({"agent": "sales"})
                await phone.until(lambda: len(served.gateway.registry.live) == 1)
                await phone.hang_up()
                await served.gateway.registry.wait_idle()
                tg.cancel_scope.cancel()
    assert "refused a request to" in caplog.text and "without a valid stream token" in caplog.text
    # The gateway's side logs neither (this test's own client logs the URLs it dials).
    gateway_side = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS))
    assert token not in gateway_side and forged not in gateway_side
    assert signed["telnyx-signature-ed25519"] not in caplog.text


@pytest.mark.anyio
async def test_without_a_key_nothing_changes_for_telnyx() -> None:
    with anyio.fail_after(10):
        async with running_gateway(secrets={"twilio": "a-token"}) as served:
            status, _, answer = await http(served.port, "POST", "/telnyx/voice", body=BODY)
            assert status == 200
            (stream,) = ET.fromstring(answer)[0]
            assert stream.attrib["url"] == f"ws://127.0.0.1:{served.port}/telnyx/stream"


def test_a_bad_key_is_refused_by_the_gateway() -> None:
    from engine.gateway.app import Gateway
    from tests.gateway.serving import weather_agent

    with pytest.raises(ValueError, match="not valid base64"):
        Gateway(weather_agent(), secrets={"telnyx": "not base64!"})


def test_engine_serve_reads_each_carrier_key_from_the_environment() -> None:
    from engine.gateway.serve import carrier_keys

    assert carrier_keys({}) is None
    assert carrier_keys({"TELNYX_PUBLIC_KEY": "k", "TWILIO_AUTH_TOKEN": ""}) == {"telnyx": "k"}
    both = {"TELNYX_PUBLIC_KEY": "k", "TWILIO_AUTH_TOKEN": "t"}
    assert carrier_keys(both) == {"twilio": "t", "telnyx": "k"}
