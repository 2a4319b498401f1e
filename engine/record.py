"""Record a session's core inputs and outputs as JSON lines, and replay them.

A recording holds everything the pure core saw (server events, commands, tool
results, timer firings, playback acknowledgements, socket drops), each with
its time on the session's monotonic clock, and what it produced (client
events, state transitions). Because the core is deterministic given its inputs
and its clock, feeding the inputs to a fresh core must reproduce the client
events exactly: :func:`replay` checks that, which turns a bug report into a
regression test.

Secrets: the core never sees the API key or the connection headers, so no line
can hold them; the URL is recorded redacted. Audio: by default server audio
deltas are recorded as their length only (``audio_bytes``) and replayed as
silence of that length, which keeps recordings small and playback arithmetic
exact.
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import attrs

from engine.core import commands as cmd
from engine.core import effects as fx
from engine.core import events as ev
from engine.core.conversation import Conversation, CoreOptions
from engine.core.metrics import Prices
from engine.errors import UpdateRejected, clip
from engine.protocol._wire import from_wire, to_wire
from engine.protocol.client import ResponseParams
from engine.protocol.codec import decode
from engine.protocol.config import config_from_wire
from engine.protocol.items import Item
from engine.protocol.server import UnknownServerEvent
from engine.protocol.server_response import ResponseOutputAudioDelta
from engine.redaction import redact

log = logging.getLogger(__name__)

VERSION = 2
"""2: commands are ``command`` records (:mod:`engine.core.commands`); 1 wrote ``call`` records."""

class Recorder:
    """Writes one JSON object per line; ``audio=True`` keeps audio bytes too."""

    def __init__(self, path: str | Path, *, audio: bool = False) -> None:
        self.path = Path(path)
        self.audio = audio
        self._file: IO[str] = self.path.open("w", encoding="utf-8")

    def write(self, line: dict[str, Any]) -> None:
        """Append one record; one that cannot be written as JSON leaves a marker in its place.

        A recording must never end a session: a value nested too deep for
        ``json.dumps`` (``RecursionError``) or not JSON at all becomes an
        ``unrecordable`` record saying what it was (replay skips it).
        """
        try:
            text = json.dumps(line, separators=(",", ":"))
        except (TypeError, ValueError, RecursionError) as exc:
            log.warning("a %s record could not be written: %s", line.get("kind"), type(exc).__name__)
            text = json.dumps(_marker(line, exc), separators=(",", ":"))
        self._file.write(redact(text) + "\n")  # a server may have echoed the key

    def close(self) -> None:
        """Flush and close the file."""
        if not self._file.closed:
            self._file.close()


class Recording:
    """Writes a core's inputs and outputs to a :class:`Recorder`: install it as ``conv.observer``.

    The core tells its observer every input (a server event or a command value)
    with the effects it produced, so nothing needs a proxy or a list of names:
    a command is written as its record form (:func:`engine.core.commands.to_record`).
    """

    def __init__(
        self, conv: Conversation, recorder: Recorder, clock: Callable[[], float], **meta: Any
    ) -> None:
        self._recorder = recorder
        self._clock = clock
        recorder.write(
            {
                "kind": "meta",
                "version": VERSION,
                "t": clock(),
                "config": conv.config.to_wire(),
                "options": attrs.asdict(conv.options),
                "history": [to_wire(item) for item in conv.history.items()],
                **meta,
            }
        )

    def __call__(self, received: Any, effects: list[fx.Effect]) -> None:
        """Record one input and what it produced."""
        now = self._clock()
        if isinstance(received, cmd.COMMAND_TYPES):
            self._recorder.write({"kind": "command", "t": now, "command": cmd.to_record(received)})
        else:
            self._server(received, now)
        for effect in effects:
            if isinstance(effect, fx.Send):
                self._recorder.write({"kind": "client", "t": now, "event": _wire_form(effect.event)})
            elif isinstance(effect, fx.Emit) and isinstance(effect.event, ev.StateChanged):
                old, new = effect.event.old, effect.event.new
                self._recorder.write({"kind": "state", "t": now, "old": old, "new": new})

    def _server(self, event: Any, now: float) -> None:
        line: dict[str, Any] = {"kind": "server", "t": now}
        try:
            if isinstance(event, ResponseOutputAudioDelta) and not self._recorder.audio:
                line["event"] = _wire_form(attrs.evolve(event, delta=""))
                line["audio_bytes"] = len(event.delta) * 3 // 4 - event.delta[-2:].count("=")
            else:
                line["event"] = _wire_form(event)
        except RecursionError as exc:  # decode refuses deep nesting; this is the last guard
            line = _marker({**line, "event": {"type": getattr(event, "type", type(event).__name__)}}, exc)
        self._recorder.write(line)


def record(conv: Conversation, recorder: Recorder, clock: Callable[[], float], **meta: Any) -> Conversation:
    """Record ``conv`` from now on (writes the meta record) and return it."""
    conv.observer = Recording(conv, recorder, clock, **meta)
    return conv


def _marker(line: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    """What is written instead of a record that cannot be: its kind, time, event type and why."""
    event = line.get("event")
    kind = event.get("type") if isinstance(event, dict) else None
    return {
        "kind": "unrecordable",
        "t": line.get("t"),
        "of": line.get("kind"),
        "type": kind if isinstance(kind, str) else None,
        "why": clip(f"{type(exc).__name__}: {exc}", 200),
    }


def _wire_form(event: Any) -> dict[str, Any]:
    """The JSON object of an event, as the codec would write it."""
    form: dict[str, Any] = event.raw if isinstance(event, UnknownServerEvent) else to_wire(event)
    return form


def _server_event(record: dict[str, Any]) -> dict[str, Any]:
    """A recorded server event, its elided audio back as silence of the recorded length."""
    event = dict(record["event"])
    if "audio_bytes" in record:
        event["delta"] = base64.b64encode(bytes(int(record["audio_bytes"]))).decode()
    return event


@attrs.frozen
class ReplayResult:
    """What a replay produced next to what was recorded."""

    timeline: list[str]
    replayed: list[dict[str, Any]]
    recorded: list[dict[str, Any]]

    @property
    def matches(self) -> bool:
        """True when the replay sent exactly the recorded client events."""
        return self.replayed == self.recorded

    def first_difference(self) -> str:
        """A readable account of the first mismatch (empty when they match)."""
        for index, (a, b) in enumerate(zip(self.replayed, self.recorded, strict=False)):
            if a != b:
                return f"client event {index}: replay sent {a}, the recording has {b}"
        if len(self.replayed) != len(self.recorded):
            return f"replay sent {len(self.replayed)} client events, the recording has {len(self.recorded)}"
        return ""


def read(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a recording, in order."""
    with Path(path).open(encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise ValueError(f"{path}:{number}: not a JSON record: {exc}") from None


@attrs.frozen(kw_only=True)
class Step:
    """One record of a recording after a fresh core was fed it (see :func:`steps`).

    ``command`` is a recorded command as its name and arguments by parameter
    name (``("audio_played", {"item_id": ..., "ms": ...})``), whatever shape the
    line had; ``effects`` is what the core produced for an input record (empty
    for output records, which are kept so readers see everything recorded);
    ``states`` is every core machine's state after the record.
    """

    t: float
    record: dict[str, Any]
    command: tuple[str, dict[str, Any]] | None
    effects: list[fx.Effect]
    states: dict[str, str]


def steps(records: Iterable[dict[str, Any]], *, source: str = "recording") -> Iterator[Step]:
    """Feed a recording's inputs to a fresh core, yielding each record with what it produced.

    The one reading of recorded inputs: :func:`replay` and the call timeline
    (:mod:`engine.timeline`) both go through it.
    """
    it = iter(records)
    meta = next(it, None)
    if meta is None or meta.get("kind") != "meta":
        raise ValueError(f"{source}: a recording starts with a meta record")
    now = [float(meta["t"])]
    conv = Conversation(
        config_from_wire(meta["config"]),
        clock=lambda: now[0],
        history=[_item(h) for h in meta.get("history", [])],
        options=_options(meta.get("options", {})),
    )
    for record in it:
        kind = record.get("kind")
        now[0] = float(record.get("t", now[0]))
        command: tuple[str, dict[str, Any]] | None = None
        effects: list[fx.Effect] = []
        if kind == "server":
            effects = conv.receive(decode(json.dumps(_server_event(record))))
        elif kind == "command":
            value = cmd.from_record(record["command"])
            command = (value.TYPE, {k: v for k, v in record["command"].items() if k != "type"})
            effects = _handle(conv, value)
        elif kind == "call":  # version 1
            command = _command(record)
            effects = _call(conv, record)
        yield Step(
            t=now[0],
            record=record,
            command=command,
            effects=effects,
            states=dict(conv.states),
        )


def _options(data: dict[str, Any]) -> CoreOptions:
    """The recorded ``CoreOptions`` (``attrs.asdict`` wrote the price table as a dict)."""
    fields = dict(data)
    if isinstance(fields.get("prices"), dict):
        fields["prices"] = Prices(**fields["prices"])
    return CoreOptions(**fields)


def replay(path: str | Path) -> ReplayResult:
    """Feed a recording's inputs to a fresh core; compare the client events it sends."""
    records = list(read(path))
    start = float(records[0].get("t", 0.0)) if records else 0.0
    timeline: list[str] = []
    replayed: list[dict[str, Any]] = []
    recorded: list[dict[str, Any]] = []
    for step in steps(records, source=str(path)):
        if step.record["kind"] == "client":
            recorded.append(step.record["event"])
        for effect in step.effects:
            if isinstance(effect, fx.Send):
                replayed.append(_wire_form(effect.event))
            elif isinstance(effect, fx.Emit) and isinstance(effect.event, ev.StateChanged):
                timeline.append(f"{step.t - start:9.3f}s  {effect.event.old} -> {effect.event.new}")
    return ReplayResult(timeline=timeline, replayed=replayed, recorded=recorded)


def _command(record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A recorded call as its name and its arguments by parameter name."""
    name = record["name"]
    args = list(record.get("args", []))
    kwargs = {k: v for k, v in record.items() if k not in ("kind", "t", "name", "args")}
    method = getattr(Conversation, name, None)
    if method is None:
        return name, {"args": args, **kwargs}
    try:
        bound = inspect.signature(method).bind(None, *args, **kwargs)
    except TypeError:
        return name, {"args": args, **kwargs}
    return name, {k: v for k, v in bound.arguments.items() if k != "self"}


def _handle(conv: Conversation, command: cmd.Command) -> list[fx.Effect]:
    try:
        return conv.handle(command)
    except UpdateRejected:
        return []  # refused when recorded too: nothing was sent


def _item(data: dict[str, Any]) -> Item:
    return from_wire(Item, data)


def _call(conv: Conversation, record: dict[str, Any]) -> list[fx.Effect]:
    name = record["name"]
    args = list(record.get("args", []))
    kwargs = {k: v for k, v in record.items() if k not in ("kind", "t", "name", "args")}
    if name == "update":
        args = [config_from_wire(args[0]) if args else config_from_wire(kwargs.pop("config"))]
    elif name == "add_item":
        args = [_item(args[0])]
    elif name == "create_response" and args and args[0] is not None:
        args = [from_wire(ResponseParams, args[0])]
    try:
        result: list[fx.Effect] = getattr(conv, name)(*args, **kwargs)
    except UpdateRejected:
        return []  # refused when recorded too: nothing was sent
    return result


def server_script(path: str | Path, *, timing: bool = True) -> list[dict[str, Any]]:
    """The server side of a recording, for the local server to play to a live client.

    Server events come in recorded order; each recorded client event becomes an
    ``{"await": type}`` marker, so the server waits for the live client as the
    original server did; with ``timing`` the recorded gaps become ``{"sleep": s}``.
    """
    script: list[dict[str, Any]] = []
    last: float | None = None
    for record in read(path):
        kind = record.get("kind")
        if kind == "client":
            script.append({"await": record["event"]["type"]})
        elif kind == "server":
            now = float(record.get("t", 0.0))
            if timing and last is not None and now - last > 0.005:
                script.append({"sleep": round(now - last, 4)})
            last = now
            script.append(_server_event(record))
    return script
