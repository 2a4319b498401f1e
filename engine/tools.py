"""Tools the model may call: a handler plus its JSON schema and its policies.

``@session.tool`` derives the schema from the function's signature and
docstring (Google style ``Args:`` give parameter descriptions);
``engine.Tool(...)`` takes an explicit schema instead.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union

import attrs

from engine.errors import UsageValueError
from engine.protocol.config import FunctionTool

Handler = Callable[..., Any]

_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


@attrs.frozen(kw_only=True)
class Tool:
    """A callable tool.

    Attributes:
        name: the name the model calls it by.
        description: what it does (the model reads this).
        parameters: JSON schema of the arguments object.
        handler: sync or async function taking the arguments as keyword arguments.
            Sync handlers run in a worker thread so they never block the audio.
        timeout: seconds before the call is abandoned and answered with an error.
        cancel_on_interrupt: cancel the call (answering "cancelled") when the user barges in.

    Raises:
        ValueError: ``timeout`` is not positive (a ``UsageValueError``).
    """

    name: str
    description: str = ""
    parameters: dict[str, Any] = attrs.field(factory=lambda: {"type": "object", "properties": {}})
    handler: Handler = attrs.field(repr=False)
    timeout: float = attrs.field(default=30.0)
    cancel_on_interrupt: bool = True

    @timeout.validator
    def _check_timeout(self, _: Any, value: float) -> None:
        if not value > 0:
            raise UsageValueError(f"tool timeout must be positive, got {value!r}")

    @property
    def schema(self) -> FunctionTool:
        """The wire description sent in ``session.tools``."""
        return FunctionTool(name=self.name, description=self.description, parameters=self.parameters)

    @property
    def is_async(self) -> bool:
        """True when the handler is a coroutine function or an object whose ``__call__`` is one."""
        return is_async_callable(self.handler)

    @classmethod
    def from_function(
        cls,
        fn: Handler,
        *,
        name: str | None = None,
        timeout: float = 30.0,
        cancel_on_interrupt: bool = True,
    ) -> Tool:
        """Build a tool whose schema comes from ``fn``'s signature and docstring."""
        summary, arg_docs = _parse_docstring(inspect.getdoc(fn) or "")
        return cls(
            name=name or str(getattr(fn, "__name__", type(fn).__name__)),
            description=summary,
            parameters=_schema(fn, arg_docs),
            handler=fn,
            timeout=timeout,
            cancel_on_interrupt=cancel_on_interrupt,
        )


def is_async_callable(handler: Any) -> bool:
    """True for a coroutine function (or a partial of one) and for an object whose ``__call__`` is one."""
    if inspect.iscoroutinefunction(handler):
        return True
    if inspect.isfunction(handler) or inspect.ismethod(handler):
        return False
    return inspect.iscoroutinefunction(getattr(type(handler), "__call__", None))  # noqa: B004


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Summary paragraph and ``Args:`` descriptions of a Google-style docstring."""
    parts = re.split(r"\n\s*\n", doc.strip(), maxsplit=1)
    summary = " ".join(parts[0].split()) if parts[0] else ""
    args: dict[str, str] = {}
    match = re.search(r"^\s*Args:\s*\n(.*?)(?:\n\s*\n|\Z)", doc, re.S | re.M)
    if match:
        current = None
        for line in match.group(1).splitlines():
            m = re.match(r"^\s*(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
            if m:
                current = m.group(1)
                args[current] = m.group(2).strip()
            elif current and line.strip():
                args[current] += " " + line.strip()
    return summary, args


def _schema(fn: Handler, arg_docs: dict[str, str]) -> dict[str, Any]:
    # A callable object's hints are those of its __call__ (the signature already drops self).
    plain = inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isbuiltin(fn)
    hints = typing.get_type_hints(fn if plain else type(fn).__call__)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        prop = _json_type(hints.get(param.name, Any))
        if param.name in arg_docs:
            prop["description"] = arg_docs[param.name]
        properties[param.name] = prop
        if param.default is param.empty and not _is_optional(hints.get(param.name)):
            required.append(param.name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _is_optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType) and type(None) in typing.get_args(hint)


def _json_type(hint: Any) -> dict[str, Any]:
    if hint in _JSON_TYPES:
        return {"type": _JSON_TYPES[hint]}
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        return {"type": _JSON_TYPES.get(type(args[0]), "string"), "enum": list(args)}
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return _json_type(options[0]) if len(options) == 1 else {"anyOf": [_json_type(a) for a in options]}
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple):
        item = _json_type(args[0]) if args else {}
        return {"type": "array", "items": item} if item else {"type": "array"}
    if origin is dict or hint is dict:
        return {"type": "object"}
    return {}
