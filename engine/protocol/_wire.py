"""Turning attrs value classes into JSON-ready dicts and back.

Each class gets a generated decoder once (per-field type tests derived from
its type hints) and an encoding plan (its field names), so the per-message
cost is straight-line code and a loop over fields, not reflection. Only the
shapes the wire needs are supported: ``str``, ``int``, ``float``, ``bool``,
``None`` unions, ``dict`` / ``Any`` kept raw, ``tuple[X, ...]`` and nested
attrs classes.

Encoding drops fields whose value is ``None`` (the server treats an absent
field as "unchanged"); where ``null`` means something (``turn_detection: null``
turns VAD off) the class writes its wire form itself. JSON keys are the
attribute names.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar, Union

import attrs

T = TypeVar("T")


class WireTypeError(Exception):
    """A JSON value did not have the type a field declares; ``path`` says where."""

    def __init__(self, path: str, expected: str, got: object) -> None:
        super().__init__(f"{path}: expected {expected}, got {_describe(got)}")
        self.path = path


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {value!r}"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    if isinstance(value, int | float):
        text = repr(value)
        return f"number {text if len(text) <= 40 else text[:40] + '...'}"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


Check = Callable[[Any, str], Any]


def _scalar(kind: type, name: str) -> Check:
    def check(value: Any, path: str) -> Any:
        # bool is an int subclass; a JSON true is never a valid number here.
        if isinstance(value, kind) and not (kind is not bool and isinstance(value, bool)):
            return value
        raise WireTypeError(path, name, value)

    return check


def _number(value: Any, path: str) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise WireTypeError(path, "number", value)


def _raw(value: Any, path: str) -> Any:
    return value


def _object(value: Any, path: str) -> Any:
    if isinstance(value, dict):
        return value
    raise WireTypeError(path, "object", value)


def _optional(inner: Check) -> Check:
    def check(value: Any, path: str) -> Any:
        return None if value is None else inner(value, path)

    return check


def _any_of(options: list[Check], name: str) -> Check:
    def check(value: Any, path: str) -> Any:
        for option in options:
            try:
                return option(value, path)
            except WireTypeError:
                continue
        raise WireTypeError(path, name, value)

    return check


def _sequence(inner: Check) -> Check:
    def check(value: Any, path: str) -> Any:
        if not isinstance(value, list):
            raise WireTypeError(path, "array", value)
        return tuple(inner(v, f"{path}[{i}]") for i, v in enumerate(value))

    return check


def _nested(cls: type) -> Check:
    def check(value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise WireTypeError(path, "object", value)
        return from_wire(cls, value, path)

    return check


_SCALARS: dict[Any, Check] = {
    str: _scalar(str, "string"),
    int: _scalar(int, "integer"),
    bool: _scalar(bool, "boolean"),
    float: _number,
    Any: _raw,
    object: _raw,
}


def _check_for(hint: Any) -> Check:
    if hint in _SCALARS:
        return _SCALARS[hint]
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        inner = (
            _check_for(args[0])
            if len(args) == 1
            else _any_of([_check_for(a) for a in args], " or ".join(_hint_name(a) for a in args))
        )
        return _optional(inner) if type(None) in typing.get_args(hint) else inner
    if origin is tuple:
        return _sequence(_check_for(typing.get_args(hint)[0]))
    if origin is dict or hint is dict:
        return _object
    if origin is typing.Literal:
        return _SCALARS[type(typing.get_args(hint)[0])]
    if attrs.has(hint):
        return _nested(hint)
    raise TypeError(f"unsupported wire type {hint!r}")


def _hint_name(hint: Any) -> str:
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


_encode_plans: dict[type, tuple[str, ...]] = {}


def decoder_for(cls: type[T]) -> Callable[[dict[str, Any], str], T]:
    """The generated decoder of ``cls`` (what :func:`from_wire` calls), for hot loops."""
    decoder = _decoders.get(cls)
    if decoder is None:
        decoder = _decoders[cls] = _compile(cls)
    return decoder


def from_wire(cls: type[T], data: dict[str, Any], path: str = "") -> T:
    """Build ``cls`` from a decoded JSON object, checking each field's type.

    Unknown keys are ignored (servers add fields); a missing field takes its
    default; a missing field without a default is a :class:`WireTypeError`.
    """
    return decoder_for(cls)(data, path)


_decoders: dict[type, Callable[[dict[str, Any], str], Any]] = {}


def _where(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _fast_test(hint: Any) -> str | None:
    """A cheap inline test that accepts the common, already-right values (else the full check runs)."""
    exact = {str: "type(v) is str", int: "type(v) is int", float: "type(v) is float", bool: "type(v) is bool"}
    if hint in exact:
        return exact[hint]
    if hint is Any or hint is object:
        return "True"
    origin = typing.get_origin(hint)
    if origin is dict or hint is dict:
        return "type(v) is dict"
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        tests = [_fast_test(a) for a in args if a is not type(None)]
        if None in tests:
            return None
        joined = " or ".join(f"({test})" for test in tests if test is not None)
        return f"v is None or {joined}" if type(None) in args else joined
    return None


def _compile(cls: type) -> Callable[[dict[str, Any], str], Any]:
    """Generate a decoder for ``cls``: inline type tests, the full check only when they fail.

    Decoding sits on the hot path (every server message), so a plain function
    per class beats a loop over closures; the generated code is small and
    built once from the class's fields and type hints.
    """
    hints = typing.get_type_hints(cls)
    namespace: dict[str, Any] = {"_MISSING": attrs.NOTHING, "_where": _where, "WireTypeError": WireTypeError}
    lines = ["def decode(data, path):", "    get = data.get"]
    args = []
    by_init: list[tuple[int, str]] = []
    for index, field in enumerate(f for f in attrs.fields(cls) if f.init):
        name = field.name  # also the JSON key
        namespace[f"_check{index}"] = _check_for(hints[name])
        namespace[f"_default{index}"] = field.default
        fast = _fast_test(hints[name])
        lines.append(f"    v = get({name!r}, _MISSING)")
        lines.append("    if v is _MISSING:")
        if field.default is not attrs.NOTHING:
            default = field.default
            if isinstance(default, attrs.Factory) and default.takes_self:  # type: ignore[arg-type]
                lines.append(f"        a{index} = _MISSING")  # left to __init__, which has the instance
                by_init.append((index, name))
            elif isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                lines.append(f"        a{index} = _default{index}.factory()")
            else:
                lines.append(f"        a{index} = _default{index}")
        else:
            required = f"WireTypeError(_where(path, {name!r}), 'a value (required field)', None)"
            lines.append(f"        raise {required}")
        if fast is not None:
            lines.append(f"    elif {fast}:")
            lines.append(f"        a{index} = v")
        lines.append("    else:")
        lines.append(f"        a{index} = _check{index}(v, _where(path, {name!r}))")
        args.append(f"{name}=a{index}")
    namespace["_cls"] = cls
    setters = _slot_setters(cls)
    if by_init:
        lines.append(f"    kw = dict({', '.join(args)})")
        for index, name in by_init:
            lines.append(f"    if a{index} is _MISSING:")
            lines.append(f"        del kw[{name!r}]")
        lines.append("    return _cls(**kw)")
    elif setters is None:
        lines.append(f"    return _cls({', '.join(args)})")
    else:
        # The values are checked above and the class has nothing else to run on
        # init, so fill the slots directly (half the cost of a frozen __init__).
        lines.append("    o = _new(_cls)")
        for index, setter in enumerate(setters):
            namespace[f"_set{index}"] = setter
            lines.append(f"    _set{index}(o, a{index})")
        lines.append("    return o")
        namespace["_new"] = object.__new__
    exec("\n".join(lines), namespace)
    decoder: Callable[[dict[str, Any], str], Any] = namespace["decode"]
    return decoder


def _slot_setters(cls: type) -> list[Callable[[Any, Any], None]] | None:
    """Slot setters of ``cls``'s init fields in order, if plain slot filling equals its ``__init__``."""
    fields = attrs.fields(cls)
    if (
        "__slots__" not in cls.__dict__
        or any(hasattr(cls, hook) for hook in ("__attrs_pre_init__", "__attrs_post_init__"))
        or any(not f.init or f.validator is not None or f.converter is not None for f in fields)
        or any(isinstance(f.default, attrs.Factory) and f.default.takes_self for f in fields)  # type: ignore[arg-type]
    ):
        return None
    setters = []
    for f in fields:
        owner = next(k for k in cls.__mro__ if f.name in k.__dict__)
        descriptor = owner.__dict__[f.name]
        if type(descriptor).__name__ != "member_descriptor":
            return None
        setters.append(descriptor.__set__)
    return setters


def _encode_plan(cls: type) -> tuple[str, ...]:
    plan = _encode_plans.get(cls)
    if plan is None:
        plan = _encode_plans[cls] = tuple(f.name for f in attrs.fields(cls))
    return plan


def to_wire(value: Any) -> Any:
    """Convert an attrs instance (recursively) to JSON-ready dicts and lists."""
    if attrs.has(type(value)):
        wire_type = getattr(type(value), "TYPE", None)
        out: dict[str, Any] = {} if wire_type is None else {"type": wire_type}
        for name in _encode_plan(type(value)):
            item = getattr(value, name)
            if item is not None:
                out[name] = to_wire(item)
        return out
    if isinstance(value, tuple | list):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    return value
