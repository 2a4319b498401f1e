"""The one error policy (engine.errors), pinned.

* every error code and source the library emits is an ``ErrorCode`` /
  ``ErrorSource`` member: a string literal in an error's code or source
  position anywhere in ``engine/`` fails (the local server is left out: it
  speaks the peer's own wire codes);
* one exception-group policy (``unwrap``), on synthetic groups;
* a table of public calls: the situation, and the exception type each raises
  (local misuse is a ``UsageError``, and a ``TypeError``/``ValueError`` where
  that is what it is; "not connected yet" and "closed" are different);
* ``Session.states`` reads every machine, lifecycle included.
"""

from __future__ import annotations

import ast
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import engine
from engine.core.states import CORE_MACHINES
from engine.errors import (
    EngineError,
    ErrorCode,
    ErrorSource,
    NotConnected,
    SessionClosed,
    UsageError,
    UsageTypeError,
    UsageValueError,
    unwrap,
)
from engine.events import Closed, ResponseDone
from engine.gateway.agent import Agent
from engine.protocol.config import ConfigError
from tests.actors.helpers import make_session
from tests.actors.peer import running_peer

ENGINE = Path(engine.__file__).parent
PEER_SPEAKING = ENGINE / "server"  # the local server answers with the peer's wire codes
CODE_CALLS = {"Error", "_error", "ProtocolFault", "protocol_error", "ConfigRejected"}


# -- every code is a member ----------------------------------------------------------------


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _literals(node: ast.AST) -> list[ast.Constant]:
    """String constants an expression can evaluate to (not the arguments of calls inside it)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node]
    if isinstance(node, ast.Call) and _name(node.func) == "str":
        return [found for arg in node.args for found in _literals(arg)]
    if isinstance(node, ast.Call | ast.Subscript | ast.Attribute | ast.JoinedStr):
        return []
    return [found for child in ast.iter_child_nodes(node) for found in _literals(child)]


def _positions(tree: ast.AST, core: bool) -> list[tuple[str, ast.expr]]:
    """Every expression in an error's code or source position."""
    out: list[tuple[str, ast.expr]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _name(node.func) in CODE_CALLS:
            if _name(node.func) == "_error" and node.args:
                out.append(("code", node.args[0]))
            out += [(kw.arg, kw.value) for kw in node.keywords if kw.arg in ("code", "source")]
        if core and isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name) and t.id in ("code", "source")]
            out += [(name, node.value) for name in names]
        if isinstance(node, ast.FunctionDef) and node.name in CODE_CALLS:
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = [*zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True)]
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None]
            out += [(a.arg, d) for a, d in pairs if a.arg in ("code", "source")]
    return out


def literal_codes(root: Path = ENGINE) -> list[str]:
    """``path:line: code 'x'`` for every string literal in an error's code or source position."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.is_relative_to(PEER_SPEAKING):
            continue
        core = "core" in path.parts or path.name in ("errors.py", "codec.py")
        for kind, expr in _positions(ast.parse(path.read_text(encoding="utf-8")), core):
            where = path.relative_to(root.parent)
            found += [f"{where}:{lit.lineno}: {kind} {lit.value!r}" for lit in _literals(expr)]
    return found


def test_every_code_and_source_the_library_emits_is_an_enum_member() -> None:
    assert literal_codes() == [], "use ErrorCode / ErrorSource members (engine.errors)"


def test_the_scan_finds_a_literal_code(tmp_path: Path) -> None:
    package = tmp_path / "engine"
    package.mkdir()
    (package / "x.py").write_text(
        "def f(ev, self, detail):\n"
        "    ev.Error(code='made_up', message='', source='local')\n"
        "    self._error(detail.get('code') or 'fallback', 'm')\n"
    )
    assert literal_codes(package) == [
        "engine/x.py:2: code 'made_up'",
        "engine/x.py:2: source 'local'",
        "engine/x.py:3: code 'fallback'",
    ]


def test_codes_and_sources_compare_equal_to_the_strings_of_before() -> None:
    assert ErrorCode.AUDIO_DROPPED == "audio_dropped" and ErrorSource.LOCAL == "local"
    assert f"{ErrorCode.SESSION_CLOSED}" == "session_closed"  # logs and f-strings read the value
    assert all(code.value == code.name.lower() for code in ErrorCode)
    assert all(source.value == source.name.lower() for source in ErrorSource)


def test_the_exception_hierarchy() -> None:
    assert issubclass(UsageTypeError, UsageError) and issubclass(UsageTypeError, TypeError)
    assert issubclass(UsageValueError, UsageError) and issubclass(UsageValueError, ValueError)
    assert issubclass(ConfigError, UsageError) and issubclass(ConfigError, ValueError)
    assert issubclass(ConfigError, EngineError)
    assert issubclass(engine.UpdateRejected, UsageError)
    assert issubclass(NotConnected, UsageError) and not issubclass(NotConnected, SessionClosed)
    assert not issubclass(SessionClosed, UsageError)


# -- one exception-group policy ---------------------------------------------------------------


class Cancelled(BaseException):
    """Stands in for the backend's cancellation class."""


def test_unwrap_drops_cancellations_when_something_failed() -> None:
    real = ValueError("real")
    group = BaseExceptionGroup("g", [Cancelled(), BaseExceptionGroup("inner", [Cancelled(), real])])
    assert unwrap(group, cancelled=Cancelled) is real


def test_unwrap_keeps_a_lone_cancellation_and_lets_an_interrupt_win() -> None:
    only = Cancelled()
    assert unwrap(BaseExceptionGroup("g", [only]), cancelled=Cancelled) is only
    interrupt = KeyboardInterrupt()
    assert unwrap(BaseExceptionGroup("g", [ValueError(), interrupt]), cancelled=Cancelled) is interrupt


def test_unwrap_prefers_what_the_caller_prefers_else_the_first() -> None:
    first, own = EngineError("mapped"), RuntimeError("the caller's own")
    group = ExceptionGroup("g", [first, own])
    assert unwrap(group, cancelled=Cancelled) is first
    assert unwrap(group, cancelled=Cancelled, prefer=lambda e: not isinstance(e, EngineError)) is own
    plain = ValueError()
    assert unwrap(plain, cancelled=Cancelled) is plain


# -- what each public call raises -------------------------------------------------------------

SYNC_CASES: list[tuple[str, Callable[[], object], type[BaseException]]] = [
    ("Inworld: a key with a line break", lambda: engine.Inworld(api_key="a\nb"), ConfigError),
    ("Inworld: an unknown auth scheme", lambda: engine.Inworld(api_key="k", auth="digest"), ConfigError),  # type: ignore[arg-type]
    ("OpenAI: a key that is not a string", lambda: engine.OpenAI(api_key=42), ConfigError),  # type: ignore[arg-type]
    ("SessionConfig: a bad modality", lambda: engine.SessionConfig(output_modalities=("x",)), ConfigError),  # type: ignore[arg-type]
    ("Session: a history entry too large", lambda: engine.Session(
        engine.Inworld(api_key="k"), history=[{"role": "user", "content": "x" * 2_000}],
        settings=engine.SessionSettings(max_item_bytes=1_000)), UsageValueError),
    ("Agent: a config that is not a SessionConfig", lambda: Agent(config="x"), UsageTypeError),  # type: ignore[arg-type]
    ("Agent.session: no provider anywhere", lambda: Agent().session(), UsageValueError),
    ("Tool: timeout not positive", lambda: engine.Tool(name="t", handler=print, timeout=0), UsageValueError),
]


@pytest.mark.parametrize(("situation", "call", "expected"), SYNC_CASES, ids=[c[0] for c in SYNC_CASES])
def test_a_sync_call_raises_its_documented_type(
    situation: str, call: Callable[[], object], expected: type[BaseException]
) -> None:
    with pytest.raises(expected):
        call()


Command = Callable[[engine.Session], Awaitable[object]]

COMMANDS: dict[str, Command] = {
    "send_text": lambda s: s.send_text("hi"),
    "send_audio": lambda s: s.send_audio(b"\x00\x00"),
    "commit_audio": lambda s: s.commit_audio(),
    "clear_audio": lambda s: s.clear_audio(),
    "create_response": lambda s: s.create_response(),
    "cancel_response": lambda s: s.cancel_response(),
    "interrupt": lambda s: s.interrupt(),
    "update": lambda s: s.update(engine.SessionConfig(instructions="x")),
    "reset": lambda s: s.reset(),
}


async def _nowait(session: engine.Session) -> None:
    session.send_audio_nowait(b"\x00\x00")


@pytest.mark.anyio
@pytest.mark.parametrize("command", [*COMMANDS, "send_audio_nowait"])
async def test_before_connect_every_command_raises_not_connected(command: str) -> None:
    session = engine.Session(engine.Inworld(api_key="k", url="ws://127.0.0.1:9/"))
    run = COMMANDS.get(command, _nowait)
    with anyio.fail_after(2), pytest.raises(NotConnected) as raised:
        await run(session)
    assert isinstance(raised.value, UsageError) and not isinstance(raised.value, SessionClosed)


WRONG_TYPES: dict[str, Command] = {
    "send_text": lambda s: s.send_text(b"bytes"),  # type: ignore[arg-type]
    "send_audio": lambda s: s.send_audio("text"),  # type: ignore[arg-type]
    "send_audio_nowait": lambda s: _call(s.send_audio_nowait, "text"),
    "update": lambda s: s.update({"instructions": "x"}),  # type: ignore[arg-type]
    "send_text (a lone surrogate)": lambda s: s.send_text("\ud800"),
    "audio_played": lambda s: _call(lambda ms: s.audio_played("item_1", ms), "10"),
    "audio_played (a negative ms)": lambda s: _call(lambda ms: s.audio_played("item_1", ms), -1.0),
}


async def _call(fn: Callable[[Any], object], arg: Any) -> None:
    fn(arg)


@pytest.mark.anyio
async def test_while_open_misuse_raises_usage_errors_and_after_close_session_closed() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)
            with pytest.raises(NotConnected):
                await session.send_text("early")
            async with session.connect():
                for name, run in WRONG_TYPES.items():
                    expected = UsageValueError if "(a" in name else UsageTypeError
                    with pytest.raises(expected):
                        await run(session)
                with pytest.raises(UsageError, match="connects once"):
                    async with session.connect():
                        pass
                await session.aclose()
                for name, run in [*COMMANDS.items(), ("send_audio_nowait", _nowait)]:
                    with pytest.raises(SessionClosed) as raised:
                        await run(session)
                    assert raised.value.reason == "closed", name
                    assert raised.value.error is None, name
                with pytest.raises(SessionClosed):
                    await session.wait_for(ResponseDone, timeout=1)


@pytest.mark.anyio
async def test_a_fatal_error_closes_with_the_error_on_session_closed() -> None:
    with anyio.fail_after(5):
        async with running_peer() as peer:

            @peer.on("conversation.item.create")
            def refuse(message: dict[str, Any]) -> list[dict[str, Any]]:
                error = {"type": "authentication_error", "code": "invalid_api_key", "message": "bad key"}
                return [{"type": "error", "error": error}]

            session = make_session(peer)
            with pytest.raises(SessionClosed) as raised:
                async with session.connect():
                    await session.send_text("hello")
                    await session.wait_for(Closed, timeout=3)
                    await session.send_text("again")
    assert raised.value.error is not None and raised.value.error.code == "invalid_api_key"
    assert raised.value.error.fatal and "invalid_api_key" in raised.value.reason


# -- Session.states ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_states_reads_every_machine_before_during_and_after() -> None:
    names = {*CORE_MACHINES, "lifecycle"}
    with anyio.fail_after(5):
        async with running_peer() as peer:
            session = make_session(peer)
            before = session.states
            assert set(before) == names and before["lifecycle"] == "new"
            assert before["conversation"] == "connecting" and before["response"] == "idle"
            async with session.connect():
                during = session.states
                assert set(during) == names and during["lifecycle"] == "open"
                assert during["conversation"] == session.state.value
                assert during["response"] == session.phase.value
                await session.aclose()
            assert session.states["lifecycle"] == "closed"
