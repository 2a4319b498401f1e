"""The gateway's HTTP side, served by hypercorn in-process: health, metrics, webhooks, admission."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from urllib.parse import urlencode

import anyio
import pytest

import engine
from engine.gateway.app import _is_loopback
from tests.gateway.serving import http, phone_call, running_gateway

pytestmark = pytest.mark.anyio

TOKEN = "twilio-auth-token-for-tests"


def twilio_signature(url: str, params: dict[str, str], token: str = TOKEN) -> str:
    """Twilio's scheme from its documentation (docs/carriers.md): HMAC-SHA1 over URL + sorted params."""
    data = url + "".join(k + v for k, v in sorted(params.items()))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


async def test_health_ready_and_metrics() -> None:
    with anyio.fail_after(10):
        async with running_gateway() as served:
            status, _, body = await http(served.port, "GET", "/healthz")
            assert (status, body) == (200, b"ok\n")
            status, _, body = await http(served.port, "GET", "/readyz")
            assert (status, body) == (200, b"ready\n")
            status, headers, body = await http(served.port, "GET", "/metrics")
            assert status == 200
            assert headers["content-type"].startswith("text/plain")
            text = body.decode()
            for name in (
                'engine_live_calls{state="active"} 0.0',
                "engine_turn_first_audio_seconds_bucket",
                "engine_turn_first_played_seconds_bucket",
                "engine_turn_total_seconds_bucket",
                "engine_interruptions_total 0.0",
            ):
                assert name in text
            served.gateway.drain()
            status, _, body = await http(served.port, "GET", "/readyz")
            assert (status, body) == (503, b"not ready: draining\n")


async def test_voice_webhook_answers_with_the_stream_url_and_parameters() -> None:
    with anyio.fail_after(10):
        async with running_gateway() as served:
            status, headers, body = await http(
                served.port,
                "POST",
                "/twilio/voice?agent=sales",
                body=b"CallSid=CA1&From=%2B15550001",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert status == 200
            assert headers["content-type"].startswith("application/xml")
            text = body.decode()
            # Plain http to loopback: ws://; behind TLS (X-Forwarded-Proto: https): wss://.
            assert f'<Stream url="ws://127.0.0.1:{served.port}/twilio/stream">' in text
            assert '<Parameter name="agent" value="sales"/>' in text
            status, _, body = await http(
                served.port, "POST", "/twilio/voice", headers={"X-Forwarded-Proto": "https"}
            )
            assert status == 200
            assert f'url="wss://127.0.0.1:{served.port}/twilio/stream"' in body.decode()


def test_only_loopback_hosts_get_plain_ws() -> None:
    assert _is_loopback("127.0.0.1:8080") and _is_loopback("localhost") and _is_loopback("[::1]:80")
    assert not _is_loopback("example.com:80") and not _is_loopback("10.0.0.1:8080")


async def test_a_bad_signature_is_refused_with_403(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with anyio.fail_after(10):
        async with running_gateway(secrets={"twilio": TOKEN}) as served:
            url = f"http://127.0.0.1:{served.port}/twilio/voice"
            form = {"CallSid": "CA1", "From": "+15550001"}
            body = urlencode(form).encode()
            form_headers = {"Content-Type": "application/x-www-form-urlencoded"}
            for signature in (None, "bad", twilio_signature(url, form, token="another-token")):
                headers = dict(form_headers)
                if signature is not None:
                    headers["X-Twilio-Signature"] = signature
                status, _, _ = await http(served.port, "POST", "/twilio/voice", body=body, headers=headers)
                assert status == 403
            good = {**form_headers, "X-Twilio-Signature": twilio_signature(url, form)}
            status, _, _ = await http(served.port, "POST", "/twilio/voice", body=body, headers=good)
            assert status == 200
            # The stream's upgrade is checked too: unsigned is refused before any call starts.
            with pytest.raises(engine.HandshakeError) as refused:
                async with phone_call(served):
                    pass
            assert refused.value.status == 403
            assert served.gateway.registry.live == ()
            stream_url = f"ws://127.0.0.1:{served.port}/twilio/stream"
            signed = {"X-Twilio-Signature": twilio_signature(stream_url, {})}
            async with phone_call(served, headers=signed) as phone:
                await phone.until(lambda: len(served.gateway.registry.live) == 1)
    assert "refused a request to" in caplog.text
    assert TOKEN not in caplog.text and repr(served.gateway).find(TOKEN) == -1


async def test_behind_a_proxy_the_signature_covers_the_public_url() -> None:
    """An ingress that terminates TLS and rewrites Host: Twilio signed https://voice.example.com/..."""
    with anyio.fail_after(10):
        async with running_gateway(secrets={"twilio": TOKEN}) as served:
            form = {"CallSid": "CA1"}
            body = urlencode(form).encode()
            public = "https://voice.example.com/twilio/voice"
            proxied = {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "voice.example.com, internal-lb:8080",  # the first proxy's view
                "X-Twilio-Signature": twilio_signature(public, form),
            }
            status, _, answer = await http(served.port, "POST", "/twilio/voice", body=body, headers=proxied)
            assert status == 200
            assert b"wss://voice.example.com/twilio/stream" in answer
            # The same signature for the URL as this gateway received it is not the public URL's.
            local = {**proxied, "X-Forwarded-Host": f"127.0.0.1:{served.port}"}
            status, _, _ = await http(served.port, "POST", "/twilio/voice", body=body, headers=local)
            assert status == 403


async def test_admission_refuses_at_max_calls_at_once() -> None:
    with anyio.fail_after(10):
        async with running_gateway(max_calls=1) as served, phone_call(served) as first:
            await first.until(lambda: bool(served.gateway.registry.live))
            status, _, body = await http(served.port, "GET", "/readyz")
            assert (status, body) == (503, b"not ready: full\n")
            status, _, _ = await http(served.port, "POST", "/twilio/voice")
            assert status == 503
            async with phone_call(served, start=False) as second:
                await second.until(lambda: second.closed is not None)
            assert isinstance(second.closed, engine.ConnectionClosed)
            assert second.closed.code == 1013
            _, _, metrics = await http(served.port, "GET", "/metrics")
            assert 'engine_calls_refused_total{reason="full"} 2.0' in metrics.decode()
            assert len(served.gateway.registry.live) == 1  # the first call goes on
