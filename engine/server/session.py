"""The local server's per-connection core: client events in, server events out. No I/O.

Theory of operation: a :class:`ServerSession` holds one connection's state
(the session config as a GA dict, the conversation, the input audio buffer
and its voice activity detector, at most one response in progress). Every
input is a method call that returns the server events to send, in order,
each already stamped with its ``event_id``.

Time is an argument, never read: ``now`` (seconds on any monotonic clock)
drives response pacing and the ``ping`` keep-alive. :meth:`next_deadline`
says when :meth:`poll` next has something to release. Voice activity needs no
clock at all: it runs on the timeline of the audio received.

Event orders follow docs/protocol.md §6: a voice turn is speech_started,
speech_stopped, committed, conversation.item.added/done, transcription deltas
and completed, then (``create_response``) the response of §6.1; speech during a
response with ``interrupt_response`` cancels it with reason ``turn_detected``
(§6.4). Errors never end the connection.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from engine.errors import ProtocolError
from engine.protocol import client as c
from engine.protocol import server as s
from engine.protocol import server_response as r
from engine.protocol.client import CLIENT_EVENTS, ClientEvent, ResponseParams
from engine.protocol.codec import ServerEvent, decode_client
from engine.protocol.config import MODALITIES, ConfigError
from engine.protocol.items import Item
from engine.server import problems as p
from engine.server.assistant import Call
from engine.server.audio import CHUNK_MS, InputDecoder, decode_base64, loudness_label, rms, sum_squares
from engine.server.conversation import Conversation, user_audio_item
from engine.server.faults import Quirks
from engine.server.handshake import Dialect
from engine.server.ids import Ids
from engine.server.items import ItemProblem, normalise_item
from engine.server.out_of_band import Asides, out_of_band, reply_for
from engine.server.responder import Plan, ResponseStream, plan_response
from engine.server.session_config import UnknownParameter, default_session, effective, reason
from engine.server.session_config import apply_update as apply_session_update
from engine.server.vad import EnergyVad, SpeechStart, SpeechStop

logger = logging.getLogger(__name__)

NO_QUIRKS = Quirks()
MIN_COMMIT_MS = 100
"""Shortest buffer ``input_audio_buffer.commit`` accepts (OpenAI's limit)."""


class ServerSession:
    """One connection's realtime session; see the module docstring.

    Args:
        now: the current time (seconds, monotonic).
        index: the connection's number, used in ids.
        epoch_ms: wall-clock milliseconds at ``now``, for ``ping`` timestamps.
        pace: response pacing (1.0 real time, 0 as fast as possible).
        ping_interval: seconds between Inworld ``ping`` events (``None``: never).
        session: overrides of the default session (a GA ``session`` object).
        transcripts: called for each committed utterance that has no scripted
            transcript of its own; returns one, or ``None`` for the default.
        quirks: Inworld behaviours to imitate beyond GA.
        dialect: whose endpoint the client reached (only Inworld's answers a tool output by itself).
    """

    def __init__(
        self,
        *,
        now: float,
        index: int = 0,
        epoch_ms: int = 0,
        pace: float = 1.0,
        ping_interval: float | None = 15.0,
        session: Mapping[str, Any] | None = None,
        transcripts: Callable[[], str | None] | None = None,
        quirks: Quirks = NO_QUIRKS,
        dialect: Dialect = "inworld",
    ) -> None:
        self._ids = Ids(index)
        self.dialect: Dialect = dialect
        self.quirks = quirks
        self._t0 = now
        self._epoch_ms = epoch_ms
        self.pace = pace
        self._ping_interval = ping_interval
        self._next_ping = now + ping_interval if ping_interval else None
        self._config = default_session(session)
        self._eff = effective(self._config)
        self.conversation = Conversation(self._ids.next("conv"))
        self._scripts: deque[str] = deque()
        self._fallback = transcripts
        self._decoder = InputDecoder(self._eff.input_type)
        self._vad = self._new_vad(0.0)
        self._speech_item: str | None = None
        self._buffered = 0  # samples in the input buffer
        self._buffered_energy = 0.0
        self._response: ResponseStream | None = None
        self._asides = Asides()  # conversation "none": beside the response (engine.server.out_of_band)
        self._handlers: dict[type, Callable[[Any, float], list[ServerEvent]]] = {
            c.SessionUpdate: self._session_update,
            c.InputAudioBufferAppend: self._append,
            c.InputAudioBufferCommit: self._commit_request,
            c.InputAudioBufferClear: self._clear,
            c.OutputAudioBufferClear: self._output_clear,
            c.ConversationItemCreate: self._item_create,
            c.ConversationItemTruncate: self._truncate,
            c.ConversationItemDelete: self._delete,
            c.ConversationItemRetrieve: self._retrieve,
            c.ResponseCreate: self._response_create,
            c.ResponseCancel: self._response_cancel,
        }

    # -- public surface -------------------------------------------------------

    @property
    def session(self) -> dict[str, Any]:
        """A copy of the effective session (what ``session.updated`` reports)."""
        return copy.deepcopy(self._config)

    @property
    def active_response_id(self) -> str | None:
        """The id of the response in progress, if any."""
        return self._response.id if self._response is not None else None

    def say_next(self, text: str) -> None:
        """Use ``text`` as the transcript of the next committed utterance (a FIFO)."""
        self._scripts.append(text)

    def open(self, now: float) -> list[ServerEvent]:
        """The greeting: ``session.created`` then ``conversation.created``."""
        conversation = {"id": self.conversation.id, "object": "realtime.conversation"}
        return self._finish(
            [s.SessionCreated(session=self.session), s.ConversationCreated(conversation=conversation)], now
        )

    def receive_text(self, text: str, now: float) -> list[ServerEvent]:
        """Handle one raw client message; malformed ones are answered with an ``error``."""
        try:
            event = decode_client(text)
        except ProtocolError as exc:
            return self._finish([_refusal(text, exc)], now)
        return self.receive(event, now)

    def receive(self, event: ClientEvent, now: float) -> list[ServerEvent]:
        """Handle one decoded client event."""
        out = self._release(now)
        out += self._handlers[type(event)](event, now)
        return self._finish(out, now)

    def poll(self, now: float) -> list[ServerEvent]:
        """Whatever has become due: response events, a ``ping``."""
        return self._finish([], now)

    def next_deadline(self) -> float | None:
        """When :meth:`poll` next has something to send (``None``: only on input)."""
        response = self._response.next_due() if self._response is not None else None
        times = [t for t in (self._next_ping, response, self._asides.next_due()) if t is not None]
        return min(times) if times else None

    # -- plumbing -------------------------------------------------------------

    def _finish(self, out: list[ServerEvent], now: float) -> list[ServerEvent]:
        out += self._release(now) + self._asides.due(now)
        if self._next_ping is not None and self._ping_interval and now >= self._next_ping:
            while self._next_ping <= now:
                self._next_ping += self._ping_interval
            out.append(s.Ping(timestamp=self._epoch_ms + round((now - self._t0) * 1000)))
        return [attrs.evolve(event, event_id=self._ids.next("event")) for event in out]

    def _release(self, now: float) -> list[ServerEvent]:
        if self._response is None:
            return []
        out = [self._book(event) for event in self._response.due(now)]
        if self._response.finished:
            self._response = None
        return out

    def _book(self, event: ServerEvent) -> ServerEvent:
        """Keep the conversation in step with a response event about to be sent."""
        conversation = self.conversation
        if isinstance(event, s.ConversationItemAdded) and event.item is not None:
            previous = conversation.insert(event.item)
            return attrs.evolve(event, previous_item_id=previous)
        if isinstance(event, s.ConversationItemDone) and event.item is not None and event.item.id:
            conversation.replace(event.item)
            return attrs.evolve(event, previous_item_id=conversation.previous_id(event.item.id))
        if isinstance(event, r.ResponseOutputAudioDelta) and event.item_id:
            conversation.audio_ms[event.item_id] = conversation.audio_ms.get(event.item_id, 0) + CHUNK_MS
        return event

    def _new_vad(self, origin_ms: float) -> EnergyVad:
        eff = self._eff
        rate = eff.input_rate
        return EnergyVad(rate, threshold=eff.threshold, silence_ms=eff.silence_ms, origin_ms=origin_ms)

    # -- session --------------------------------------------------------------

    def _session_update(self, event: c.SessionUpdate, now: float) -> list[ServerEvent]:
        try:
            config = apply_session_update(self._config, event.session)
        except ConfigError as exc:
            code = p.UNKNOWN_PARAMETER if isinstance(exc, UnknownParameter) else p.INVALID_VALUE
            return [p.error(code, reason(exc), param=exc.param, event_id=event.event_id)]
        old = self._eff
        self._config, self._eff = config, effective(config)
        new = self._eff
        if (old.input_type, old.input_rate, old.threshold, old.silence_ms, old.vad) != (
            new.input_type,
            new.input_rate,
            new.threshold,
            new.silence_ms,
            new.vad,
        ):
            self._decoder = InputDecoder(new.input_type)
            self._vad = self._new_vad(self._vad.position_ms)
            self._speech_item = None
        return [s.SessionUpdated(session=self.session)]

    # -- input audio ----------------------------------------------------------

    def _append(self, event: c.InputAudioBufferAppend, now: float) -> list[ServerEvent]:
        try:
            data = decode_base64(event.audio)
        except ValueError:
            message = "Invalid 'audio': expected base64-encoded audio bytes."
            return [p.error(p.INVALID_VALUE, message, param="audio", event_id=event.event_id)]
        samples = self._decoder.decode(data)
        self._buffered += len(samples)
        self._buffered_energy += sum_squares(samples)
        out: list[ServerEvent] = []
        for change in self._vad.feed(samples):
            if self._eff.vad is None:
                if self.quirks.manual_vad_events:
                    out.append(self._manual_vad_event(change))
                continue  # manual turns: the detector only keeps the timeline
            if isinstance(change, SpeechStart):
                out += self._speech_started(change, now)
            else:
                out += self._speech_stopped(change, now)
        return out

    def _manual_vad_event(self, change: SpeechStart | SpeechStop) -> ServerEvent:
        """Inworld's speech events in manual mode: reported, nothing committed or cancelled."""
        if isinstance(change, SpeechStart):
            self._speech_item = self._ids.next("item")
            return s.InputAudioBufferSpeechStarted(item_id=self._speech_item, audio_start_ms=change.start_ms)
        return s.InputAudioBufferSpeechStopped(item_id=self._speech_item, audio_end_ms=change.end_ms)

    def _speech_started(self, change: SpeechStart, now: float) -> list[ServerEvent]:
        self._speech_item = self._ids.next("item")
        started = s.InputAudioBufferSpeechStarted(item_id=self._speech_item, audio_start_ms=change.start_ms)
        out: list[ServerEvent] = [started]
        if self._eff.interrupt_response and self._response is not None:
            out += self._cancel("turn_detected")
        return out

    def _speech_stopped(self, change: SpeechStop, now: float) -> list[ServerEvent]:
        item_id = self._speech_item or self._ids.next("item")
        self._speech_item = None
        stopped = s.InputAudioBufferSpeechStopped(item_id=item_id, audio_end_ms=change.end_ms)
        out: list[ServerEvent] = [stopped]
        out += self._commit(item_id, change.end_ms - change.start_ms, change.level)
        if self._eff.create_response and self._response is None:
            out += self._start_response(now, None)
        return out

    def _commit_request(self, event: c.InputAudioBufferCommit, now: float) -> list[ServerEvent]:
        ms = self._buffered * 1000 / self._eff.input_rate
        if self._buffered == 0:
            message = "Error committing input audio buffer: the buffer is empty."
            return [p.error(p.COMMIT_EMPTY, message, event_id=event.event_id)]
        if ms < MIN_COMMIT_MS:
            message = (
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {ms:.2f}ms of audio."
            )
            return [p.error(p.COMMIT_EMPTY, message, event_id=event.event_id)]
        item_id = self._speech_item or self._ids.next("item")
        self._speech_item = None
        self._vad.reset()
        return self._commit(item_id, round(ms), rms(self._buffered_energy, self._buffered))

    def _commit(self, item_id: str, duration_ms: int, level: float) -> list[ServerEvent]:
        """Turn the buffer into a user item, then transcribe it (docs/protocol.md §6.1 steps 6-8)."""
        transcript = self._next_transcript()
        if transcript is None:
            transcript = f"[speech {duration_ms / 1000:.2f} s, {loudness_label(level)}]"
        self._buffered, self._buffered_energy = 0, 0.0
        self._decoder.reset()
        item = user_audio_item(item_id)
        previous = self.conversation.insert(item)
        out: list[ServerEvent] = [
            s.InputAudioBufferCommitted(item_id=item_id, previous_item_id=previous),
            s.ConversationItemAdded(item=item, previous_item_id=previous),
            s.ConversationItemDone(item=item, previous_item_id=previous),
        ]
        pieces = re.findall(r"\S+\s*", transcript) or [transcript]
        size = -(-len(pieces) // 3)
        for i in range(0, len(pieces), size):
            delta = "".join(pieces[i : i + size])
            out.append(s.InputAudioTranscriptionDelta(item_id=item_id, content_index=0, delta=delta))
        usage = {"type": "duration", "seconds": round(duration_ms / 1000, 3)}
        out.append(
            s.InputAudioTranscriptionCompleted(
                item_id=item_id, content_index=0, transcript=transcript, usage=usage
            )
        )
        self.conversation.set_transcript(item_id, transcript)
        return out

    def _next_transcript(self) -> str | None:
        if self._scripts:
            return self._scripts.popleft()
        return self._fallback() if self._fallback is not None else None

    def _clear(self, event: c.InputAudioBufferClear, now: float) -> list[ServerEvent]:
        self._buffered, self._buffered_energy = 0, 0.0
        self._decoder.reset()
        self._vad.reset()
        self._speech_item = None
        return [s.InputAudioBufferCleared()]

    def _output_clear(self, event: c.OutputAudioBufferClear, now: float) -> list[ServerEvent]:
        message = "output_audio_buffer.clear is only supported for WebRTC and SIP connections."
        return [p.error(p.INVALID_VALUE, message, param="type", event_id=event.event_id)]

    # -- conversation items ---------------------------------------------------

    def _item_create(self, event: c.ConversationItemCreate, now: float) -> list[ServerEvent]:
        item_id = event.item.id or self._ids.next("item")
        if self.conversation.get(item_id) is not None:
            message = f"Item with id '{item_id}' already exists."
            return [p.error(p.DUPLICATE_ITEM_ID, message, param="item.id", event_id=event.event_id)]
        try:
            item = normalise_item(event.item, item_id, self._ids.next("call"))
        except ItemProblem as exc:
            return [p.error(p.INVALID_VALUE, exc.message, param=exc.param, event_id=event.event_id)]
        try:
            previous = self.conversation.insert(item, event.previous_item_id)
        except KeyError:
            message = (
                f"Error adding item: the previous item with id '{event.previous_item_id}' does not exist."
            )
            return [
                p.error(p.CREATE_INVALID_PREVIOUS, message, param="previous_item_id", event_id=event.event_id)
            ]
        out: list[ServerEvent] = [
            s.ConversationItemAdded(item=item, previous_item_id=previous),
            s.ConversationItemDone(item=item, previous_item_id=previous),
        ]
        # Inworld's providerData.auto_tool_response (docs/protocol.md §4.4); never a GA server's.
        automatic = self.dialect == "inworld" and self._eff.auto_tool_response and self._response is None
        if item.type == "function_call_output" and automatic and self._all_calls_answered():
            out += self._start_response(now, None)
        return out

    def _all_calls_answered(self) -> bool:
        items = self.conversation.items
        answered = {i.call_id for i in items if i.type == "function_call_output"}
        return all(i.call_id in answered for i in items if i.type == "function_call")

    def _truncate(self, event: c.ConversationItemTruncate, now: float) -> list[ServerEvent]:
        item = self.conversation.get(event.item_id)
        eid = event.event_id
        if item is None:
            message = f"Item with item_id '{event.item_id}' not found."
            return [p.error(p.TRUNCATE_INVALID_ID, message, param="item_id", event_id=eid)]
        parts = item.content or ()
        if item.role != "assistant" or not any(part.type == "output_audio" for part in parts):
            message = "Only model output audio messages can be truncated."
            return [p.error(p.INVALID_VALUE, message, param="item_id", event_id=eid)]
        if not 0 <= event.content_index < len(parts) or parts[event.content_index].type != "output_audio":
            message = f"Invalid content_index {event.content_index}: not an audio part."
            return [p.error(p.INVALID_VALUE, message, param="content_index", event_id=eid)]
        total = self.conversation.audio_ms.get(event.item_id, 0)
        if event.audio_end_ms < 0 or event.audio_end_ms > total:
            message = f"Audio content of {total}ms is already shorter than {event.audio_end_ms}ms"
            return [p.error(p.INVALID_VALUE, message, param="audio_end_ms", event_id=eid)]
        transcript = parts[event.content_index].transcript or ""
        keep = round(len(transcript) * event.audio_end_ms / total) if total else 0
        self.conversation.set_transcript(event.item_id, transcript[:keep], event.content_index)
        self.conversation.audio_ms[event.item_id] = event.audio_end_ms
        return [
            s.ConversationItemTruncated(
                item_id=event.item_id, content_index=event.content_index, audio_end_ms=event.audio_end_ms
            )
        ]

    def _delete(self, event: c.ConversationItemDelete, now: float) -> list[ServerEvent]:
        if not self.conversation.delete(event.item_id):
            message = f"Item with item_id '{event.item_id}' not found."
            return [p.error(p.DELETE_INVALID_ID, message, param="item_id", event_id=event.event_id)]
        return [s.ConversationItemDeleted(item_id=event.item_id)]

    def _retrieve(self, event: c.ConversationItemRetrieve, now: float) -> list[ServerEvent]:
        item = self.conversation.get(event.item_id)
        if item is None:
            message = f"Item with item_id '{event.item_id}' not found."
            return [p.error(p.RETRIEVE_INVALID_ID, message, param="item_id", event_id=event.event_id)]
        return [s.ConversationItemRetrieved(item=item)]

    # -- responses ------------------------------------------------------------

    def _response_create(self, event: c.ResponseCreate, now: float) -> list[ServerEvent]:
        if self._response is not None and not out_of_band(event.response):
            message = (
                f"Conversation already has an active response in progress: {self._response.id}. "
                "Wait until the response is finished before creating a new one."
            )
            return [p.error(p.ALREADY_ACTIVE, message, event_id=event.event_id)]
        params = event.response
        modalities = params.output_modalities if params is not None else None
        if modalities is not None and (not modalities or any(m not in MODALITIES for m in modalities)):
            message = f"Invalid value: {list(modalities)!r}. Supported values are: 'audio', 'text'."
            return [
                p.error(p.INVALID_VALUE, message, param="response.output_modalities", event_id=event.event_id)
            ]
        return self._start_response(now, params)

    def _start_response(self, now: float, params: ResponseParams | None) -> list[ServerEvent]:
        eff = self._eff
        params = params or ResponseParams()
        context = self._context(params.input)
        tools = list(params.tools) if params.tools is not None else list(eff.tools)
        reply = reply_for(params, context, tools, params.tool_choice or eff.tool_choice)
        plan = Plan(
            response_id=self._ids.next("resp"),
            item_id=self._ids.next("item"),
            call_id=self._ids.next("call") if isinstance(reply, Call) else "",
            reply=reply,
            modalities=tuple(params.output_modalities or eff.modalities),
            output_format=self._config["audio"]["output"]["format"],
            voice=eff.voice,
            conversation_id=None if params.conversation == "none" else self.conversation.id,
            max_output_tokens=params.max_output_tokens or eff.max_output_tokens,
            metadata=params.metadata,
            omit_call_name=self.quirks.omit_call_name,
            input_tokens=sum(
                len(item.text or item.output or item.arguments or "") // 4 + 1 for item in context
            ),
        )
        self._response = self._asides.keep(plan_response(plan, started=now, pace=self.pace), self._response)
        return self._release(now)

    def _context(self, given: tuple[Item, ...] | None) -> list[Item]:
        if given is None:
            return self.conversation.items
        out: list[Item] = []
        for item in given:
            if item.type == "item_reference" and item.id:
                found = self.conversation.get(item.id)
                if found is not None:
                    out.append(found)
            else:
                out.append(item)
        return out

    def _response_cancel(self, event: c.ResponseCancel, now: float) -> list[ServerEvent]:
        active = self._response
        if active is None or (event.response_id is not None and event.response_id != active.id):
            message = "Cancellation failed: no active response found"
            return [p.error(p.CANCEL_NOT_ACTIVE, message, event_id=event.event_id)]
        return self._cancel("client_cancelled")

    def _cancel(self, why: str) -> list[ServerEvent]:
        if self._response is None:
            return []
        events = self._response.cancel(why)
        self._response = None
        logger.debug("response cancelled (%s)", why)
        return [self._book(event) for event in events]


def _refusal(text: str, exc: ProtocolError) -> ServerEvent:
    """The ``error`` the service sends for a client message that does not decode."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        return p.error(p.INVALID_JSON, f"Invalid JSON: {err}.")
    if not isinstance(data, dict):
        return p.error(p.INVALID_JSON, "Expected a JSON object.")
    event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in CLIENT_EVENTS:
        supported = ", ".join(f"'{k}'" for k in CLIENT_EVENTS)
        message = f"Invalid value: {kind!r}. Supported values are: {supported}."
        return p.error(p.INVALID_VALUE, message, param="type", event_id=event_id)
    return p.error(p.INVALID_VALUE, exc.message, event_id=event_id)
