"""Fuzz the whole runtime with server messages: nothing dies, every bad message is reported.

A small scripted peer (:class:`FuzzPeer`, on ``engine.transports.listen.serve``
over 127.0.0.1) does the handshake (``session.created``, then on the client's
``session.update`` a ``session.updated``), sends a hypothesis-generated list of
messages, then a *settle* (what any server sends eventually: ``response.done``
for the responses the fuzz may have opened, ``speech_stopped`` for speech it
may have started and the response server VAD then creates) and a sentinel
``error``. After that it behaves like a plain server: it answers every
``response.create`` with a whole text response echoing the last user text,
and a ``response.cancel`` with ``response_cancel_not_active`` (it has nothing
running).

The messages mix valid events of every family (audio and transcript deltas,
response lifecycle, items, function calls, user speech, errors), the same
events mutated (a field removed, a field of the wrong type or a huge number,
ids swapped for unknown ones, sent twice), and garbage (not JSON, JSON arrays
and scalars, deep nesting, objects without a string ``type``, invalid base64
audio). Unknown ``type`` values are sent too, but they are not bad input:
the codec maps them to ``UnknownServerEvent`` by design (new server events
must not break old clients), so they are not counted. One valid-looking
shape is left out: a ``function_call`` output item for a response that is
not active wedged the session (an engine bug, fixed; the regression test is at the end).

Properties, under asyncio and trio:

* no actor dies and the session stays connected on the same socket: no
  reconnect, no ``Closed`` but the application's own at the end, ``state`` a
  declared ``engine.State`` other than ``CLOSED`` and ``statistics()`` working
  (before and after the normal turn);
* every message the codec rejects produced exactly one non-fatal
  ``Error(code="protocol_error", source="protocol")`` (the garbage is checked
  to be rejected), every invalid base64 audio delta one ``invalid_audio``, and
  no ``Error`` at all was fatal;
* afterwards a normal text turn completes with the expected answer.

Each example runs in its own ``anyio.run`` (a sync hypothesis test,
parametrized by backend); the hypothesis database is off so nothing is
written outside this folder.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import attrs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import engine
from engine import events as ev
from engine.errors import ConnectionClosed, ProtocolError
from engine.protocol.codec import decode
from engine.transports import Transport, TransportSettings
from engine.transports.listen import serve
from tests.reliability.scenarios import text_response
from tests.reliability.support import KEY, Observer, register_weather
from tests.reliability.support import settings as session_settings

RESPONSE_IDS = ("resp_1", "resp_2")
ITEM_IDS = ("item_1", "item_2", "item_3")
CALL_IDS = ("call_1", "call_2")
AUDIO = base64.b64encode(bytes(480)).decode()  # 10 ms of silence
NORMAL_TEXT = "after the storm"
SENTINEL_CODE = "fuzz_sentinel"
EXAMPLE_LIMIT = 5.0
"""Seconds one example may take (a normal one takes ~20 ms)."""
PEER_SETTINGS = TransportSettings(keepalive_interval=None, close_timeout=0.5)
NON_FATAL_CODES = (
    "invalid_value",
    "response_cancel_not_active",
    "conversation_already_has_active_response",
    "input_audio_buffer_commit_empty",
    "rate_limit_exceeded",
    "server_error",
    None,
)


def _dumps(message: Any) -> str:
    return json.dumps(message, separators=(",", ":"))


# ---------------------------------------------------------------------- the scripted peer


def _answer(number: int, user_text: str) -> list[dict[str, Any]]:
    """A whole text response echoing the user, as the local assistant would."""
    return text_response(f"resp_peer_{number}", f"You said: {user_text}.")


def _settle() -> list[str]:
    """What any server sends eventually, so the fuzz leaves nothing pending on the server's side.

    The end of every response the fuzz may have opened, the end of any user
    speech it started, and the response server VAD starts by itself after it.
    """
    ends = [
        {"type": "response.done", "response": {"id": rid, "status": "cancelled", "output": []}}
        for rid in (*RESPONSE_IDS, None)
    ]
    stop = {"type": "input_audio_buffer.speech_stopped", "item_id": "item_settle", "audio_end_ms": 0}
    return [_dumps(event) for event in [*ends, stop, *_answer(0, "settled")]]


SENTINEL = _dumps(
    {
        "type": "error",
        "error": {"type": "invalid_request_error", "code": SENTINEL_CODE, "message": "end of the fuzz"},
    }
)


class FuzzPeer:
    """A ``ServerApp``: handshake, the fuzz, the settle and sentinel, then a plain echo server."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        self.connections = 0
        self.port = 0

    def check_handshake(self, path: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
        return None

    async def handle(self, transport: Transport, path: str, headers: Mapping[str, str]) -> None:
        self.connections += 1
        try:
            await self._serve(transport)
        except ConnectionClosed:
            return

    async def _serve(self, transport: Transport) -> None:
        await transport.send(_dumps({"type": "session.created", "event_id": "ev_c", "session": {}}))
        while json.loads(await transport.receive()).get("type") != "session.update":
            pass
        await transport.send(_dumps({"type": "session.updated", "event_id": "ev_u", "session": {}}))
        for text in [*self.messages, *_settle(), SENTINEL]:
            await transport.send(text)
        user_text, answered = "", 0
        while True:
            message = json.loads(await transport.receive())
            kind = message.get("type")
            if kind == "conversation.item.create" and message["item"].get("role") == "user":
                user_text = "".join(p.get("text") or "" for p in message["item"].get("content") or [])
            elif kind == "response.create":
                answered += 1
                for event in _answer(answered, user_text):
                    await transport.send(_dumps(event))
            elif kind == "response.cancel":
                error = {"type": "invalid_request_error", "code": "response_cancel_not_active"}
                await transport.send(_dumps({"type": "error", "error": {**error, "message": "none"}}))


@asynccontextmanager
async def serving_peer(peer: FuzzPeer) -> AsyncIterator[str]:
    """Serve ``peer`` on 127.0.0.1 for the block; yields its URL. The block's exception comes out bare."""
    try:
        async with anyio.create_task_group() as tg:
            peer.port = await tg.start(partial(serve, peer, "127.0.0.1", 0, settings=PEER_SETTINGS))
            try:
                yield f"ws://127.0.0.1:{peer.port}/api/v1/realtime/session"
            finally:
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        real = [e for e in _leaves(group) if not isinstance(e, anyio.get_cancelled_exc_class())]
        if len(real) == 1:
            raise real[0] from None
        raise


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def fuzz_session(url: str, *, key: str = KEY, record: Path | None = None) -> engine.Session:
    """A text-only session on the peer, with the weather tool (fuzzed calls name it)."""
    session = engine.Session(
        engine.Inworld(api_key=key, url=url),
        engine.SessionConfig(output_modalities=("text",)),
        settings=session_settings(close_timeout=0.3),
        record=record,
    )
    register_weather(session)
    return session


# ---------------------------------------------------------------------- the messages


def obj(**fields: Any) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object whose values are drawn from strategies (plain values are used as they are)."""
    return st.fixed_dictionaries(
        {
            name: value if isinstance(value, st.SearchStrategy) else st.just(value)
            for name, value in fields.items()
        }
    )


def event(kind: str, **fields: Any) -> st.SearchStrategy[dict[str, Any]]:
    """A server event of type ``kind`` (fields as in :func:`obj`)."""
    return obj(**fields).map(lambda body: {"type": kind, **body})


def message_item(item_id: str, role: str, text: str) -> dict[str, Any]:
    kind = "input_text" if role == "user" else "output_text"
    return {"id": item_id, "type": "message", "role": role, "content": [{"type": kind, "text": text}]}


def call_item(item_id: str, call_id: str, arguments: str | None) -> dict[str, Any]:
    item = {"id": item_id, "type": "function_call", "call_id": call_id, "name": "get_weather"}
    return item if arguments is None else {**item, "arguments": arguments, "status": "completed"}


def _valid_events() -> st.SearchStrategy[dict[str, Any]]:
    """Well-formed server events of every family, with ids drawn from small pools so they collide."""
    rid = st.sampled_from(RESPONSE_IDS)
    iid = st.sampled_from(ITEM_IDS)
    cid = st.sampled_from(CALL_IDS)
    words = st.sampled_from(["Hello", " there", " Paris", "", " sunny."])
    status = st.sampled_from(["completed", "cancelled", "failed", "incomplete"])
    arguments = st.sampled_from(['{"city":"Paris"}', "{not json", ""])
    messages = st.builds(message_item, iid, st.sampled_from(["user", "assistant"]), words)
    calls = st.builds(call_item, iid, cid, st.sampled_from([None, '{"city":"Paris"}', "{not json"]))
    items = st.one_of(messages, calls)
    output = {"response_id": rid, "output_index": 0}
    part = {**output, "item_id": iid, "content_index": 0}
    error = obj(type="invalid_request_error", code=st.sampled_from(NON_FATAL_CODES), message=words)
    return st.one_of(
        event("response.created", response=obj(id=rid, status="in_progress")),
        event("response.done", response=obj(id=rid, status=status, output=st.lists(items, max_size=2))),
        event("response.output_item.added", **output, item=items),
        event("response.output_item.done", **output, item=items),
        event("conversation.item.added", item=items),
        event("conversation.item.done", item=items),
        event("conversation.item.deleted", item_id=iid),
        event("conversation.item.truncated", item_id=iid, content_index=0, audio_end_ms=st.integers(0, 500)),
        event("response.output_audio.delta", **part, delta=AUDIO),
        event("response.output_audio_transcript.delta", **part, delta=words),
        event("response.output_audio_transcript.done", **part, transcript=words),
        event("response.output_text.delta", **part, delta=words),
        event("response.output_text.done", **part, text=words),
        event("response.function_call_arguments.delta", **part, call_id=cid, delta="{"),
        event(
            "response.function_call_arguments.done",
            **part,
            call_id=cid,
            name="get_weather",
            arguments=arguments,
        ),
        event("input_audio_buffer.speech_started", item_id=iid, audio_start_ms=st.integers(0, 900)),
        event("input_audio_buffer.speech_stopped", item_id=iid, audio_end_ms=st.integers(0, 900)),
        event("input_audio_buffer.committed", item_id=iid),
        event("conversation.item.input_audio_transcription.delta", item_id=iid, content_index=0, delta=words),
        event(
            "conversation.item.input_audio_transcription.completed",
            item_id=iid,
            content_index=0,
            transcript=words,
        ),
        event(
            "conversation.item.input_audio_transcription.failed", item_id=iid, error={"message": "stt down"}
        ),
        event("error", error=error),
        event("rate_limits.updated", rate_limits=[{"name": "requests", "limit": 10, "remaining": 9}]),
        event("ping", timestamp=1),
    )


WRONG_VALUES: st.SearchStrategy[Any] = st.sampled_from(
    [5, -1, 10**30, 1e308, float("inf"), float("nan"), "x", "", [], {}, True, None, [1, "a"], {"nested": []}]
)


@st.composite
def _mutated(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with one field removed, retyped or given an unknown id (``type`` kept)."""
    event = dict(draw(_valid_events()))
    fields = sorted(k for k in event if k != "type")
    if not fields:
        return event
    field = draw(st.sampled_from(fields))
    how = draw(st.sampled_from(["remove", "retype", "unknown id"]))
    if how == "remove":
        del event[field]
    elif how == "retype":
        event[field] = draw(WRONG_VALUES)
    else:
        event[field] = draw(st.sampled_from(["resp_unknown", "item_unknown", "call_unknown"]))
    return event


GARBAGE = st.one_of(
    st.sampled_from(["", "not json", "{", "}", '{"type":', "\x00\x01", "nul", "{'type': 'single quotes'}"]),
    st.text(max_size=20).map(lambda t: "{" + t),
    st.lists(st.integers(), max_size=3).map(_dumps),  # a JSON array
    st.sampled_from(["42", "null", "true", '"a string"', "1" * 5000, "[" * 20000 + "]" * 20000]),
    st.sampled_from([{}, {"type": 5}, {"type": ""}, {"type": None}, {"type": ["response.done"]}]).map(_dumps),
    _valid_events().map(lambda e: _dumps({k: v for k, v in e.items() if k != "type"})),
)
"""Messages that are not a JSON object with a string ``type``: the codec must reject each one."""

BAD_AUDIO = event(
    "response.output_audio.delta",
    response_id=st.integers(0, 10**6).map(lambda n: f"resp_audio_{n}"),
    item_id="item_1",
    output_index=0,
    content_index=0,
    delta=st.sampled_from(["not base64!", "abc", "====", "QUJD*", "\u00e9t\u00e9"]),
).map(_dumps)
"""Audio deltas whose ``delta`` is not base64, each under a fresh response id (never interrupted)."""

UNKNOWN = st.sampled_from(["response.future_thing", "x.y", "session.teleported"]).map(
    lambda kind: _dumps({"type": kind, "payload": [1, 2, 3]})
)


@st.composite
def fuzz_messages(draw: st.DrawFn) -> list[tuple[str, str]]:
    """``(kind, text)`` pairs: kind is ``valid``, ``mutated``, ``garbage``, ``bad_audio`` or ``unknown``."""
    out: list[tuple[str, str]] = []
    entries = st.one_of(
        _valid_events().map(lambda e: ("valid", _dumps(e))),
        _mutated().map(lambda e: ("mutated", _dumps(e))),
        GARBAGE.map(lambda t: ("garbage", t)),
        BAD_AUDIO.map(lambda t: ("bad_audio", t)),
        UNKNOWN.map(lambda t: ("unknown", t)),
    )
    for kind, text in draw(st.lists(entries, min_size=1, max_size=40)):
        out.append((kind, text))
        if kind in ("valid", "mutated") and draw(st.booleans()) and draw(st.booleans()):
            out.append((kind, text))  # a duplicate: same text, same event_id (if any)
    return out


BAD_AUDIO_EXAMPLE: list[tuple[str, str]] = [
    ("garbage", "not json"),
    ("garbage", "[1, 2, 3]"),
    ("garbage", "1" * 5000),
    ("garbage", _dumps({"type": 5})),
    ("valid", _dumps({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}})),
    ("mutated", _dumps({"type": "response.output_text.delta", "response_id": "resp_1", "delta": 5})),
    (
        "valid",
        _dumps(
            {
                "type": "response.output_text.delta",
                "response_id": "resp_1",
                "item_id": "item_1",
                "delta": "Hi",
            }
        ),
    ),
    (
        "bad_audio",
        _dumps({"type": "response.output_audio.delta", "response_id": "resp_audio_1", "delta": "%%%"}),
    ),
    ("unknown", _dumps({"type": "response.future_thing"})),
    ("valid", _dumps({"type": "response.done", "response": {"id": "resp_1", "status": "completed"}})),
    ("valid", _dumps({"type": "response.done", "response": {"id": "resp_1", "status": "completed"}})),
]
"""A fixed example, always run (``@example``) and reused by the secret test."""


def _rejected(text: str) -> bool:
    try:
        decode(text)
    except ProtocolError:
        return True
    return False


# ---------------------------------------------------------------------- the property


def assert_alive(session: engine.Session) -> None:
    """No actor died: a declared state other than CLOSED, and ``statistics()`` answers."""
    assert isinstance(session.state, engine.State)
    assert session.state is not engine.State.CLOSED
    stats = session.statistics()
    assert all(isinstance(value, int) and value >= 0 for value in attrs.astuple(stats)), stats


async def run_fuzz_example(
    messages: list[tuple[str, str]], *, key: str = KEY, record: Path | None = None
) -> tuple[Observer, FuzzPeer, engine.Session]:
    """One example: the fuzz on a fresh peer, then the normal turn; checks the session stays up."""
    peer = FuzzPeer([text for _, text in messages])
    async with serving_peer(peer) as url:
        session = fuzz_session(url, key=key, record=record)
        observer = Observer(session)
        with anyio.fail_after(EXAMPLE_LIMIT):
            async with session.connect():
                await observer.until(lambda: any(e.code == SENTINEL_CODE for e in observer.errors))
                assert_alive(session)
                await session.send_text(NORMAL_TEXT)
                await observer.answered(f"You said: {NORMAL_TEXT}.")
                assert_alive(session)
    return observer, peer, session


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@example(messages=BAD_AUDIO_EXAMPLE)
@given(messages=fuzz_messages())
def test_fuzzed_server_messages_never_kill_the_session(backend: str, messages: list[tuple[str, str]]) -> None:
    observer, peer, _session = anyio.run(run_fuzz_example, messages, backend=backend)

    assert peer.connections == 1, "bad input must not cost the socket (no reconnect)"
    assert not observer.of(ev.Reconnecting)
    closed = observer.of(ev.Closed)
    assert len(closed) == 1 and closed[0].error is None, closed  # only the close at the end
    fatal = [e for e in observer.errors if e.fatal]
    assert fatal == [], f"fatal errors: {fatal}"

    garbage = [text for kind, text in messages if kind == "garbage"]
    assert all(_rejected(text) for text in garbage), "the generator's garbage must be undecodable"
    rejected = sum(1 for _, text in messages if _rejected(text))
    protocol_errors = [e for e in observer.errors if e.code == "protocol_error"]
    assert all(e.source == "protocol" for e in protocol_errors)
    assert len(protocol_errors) == rejected, (
        f"{rejected} messages were undecodable but {len(protocol_errors)} protocol errors were reported"
    )
    assert len(protocol_errors) >= len(garbage)
    bad_audio = sum(1 for kind, _ in messages if kind == "bad_audio")
    invalid_audio = [e for e in observer.errors if e.code == "invalid_audio"]
    assert all(e.source == "protocol" for e in invalid_audio)
    assert len(invalid_audio) >= bad_audio


# ---------------------------------------------------------------------- a bug the fuzz found (fixed)


@pytest.mark.anyio
async def test_a_stray_function_call_item_does_not_wedge_the_session() -> None:
    """A function_call output item for a response that was never created, then the normal turn.

    Expected: the out-of-order item is reported (a non-fatal ``Error``) or at
    least settled by the settle's ``response.done`` of its response, and the
    next text turn is answered. Found by the fuzz above (shrunk example).
    """
    stray = {
        "type": "response.output_item.added",
        "response_id": "resp_1",
        "output_index": 0,
        "item": {"id": "item_1", "type": "function_call", "call_id": "call_1", "name": "get_weather"},
    }
    peer = FuzzPeer([_dumps(stray)])
    async with serving_peer(peer) as url:
        session = fuzz_session(url)
        observer = Observer(session)
        async with session.connect():
            with anyio.fail_after(5):
                await observer.until(lambda: any(e.code == SENTINEL_CODE for e in observer.errors))
            await session.send_text(NORMAL_TEXT)
            with anyio.fail_after(1.5):  # an answered turn takes a few milliseconds
                await observer.answered(f"You said: {NORMAL_TEXT}.")
