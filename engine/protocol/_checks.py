"""Validators shared by the configuration classes: each failure is a ConfigError naming the field."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable
from typing import Any

from attrs import validators as v

from engine.errors import UsageValueError
from engine.protocol.text import check_text


class ConfigError(UsageValueError):
    """An invalid configuration value; ``param`` is its GA path (``session.voice``).

    Local misuse: an :class:`~engine.errors.EngineError` and a ``ValueError``.
    """

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


Validator = Callable[[Any, Any, Any], None]


def _named(name: str, *checks: Validator) -> Validator:
    """attrs validators run in order, their TypeError/ValueError turned into a ConfigError for ``name``."""

    def check(instance: Any, attribute: Any, value: Any) -> None:
        for inner in checks:
            try:
                inner(instance, attribute, value)
            except ConfigError:
                raise
            except (TypeError, ValueError) as exc:
                raise ConfigError(name, _reason(exc, value)) from None

    return check


def _clip(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


def _reason(exc: BaseException, value: object) -> str:
    # attrs' instance_of raises TypeError(message, attribute, expected type(s), value).
    if isinstance(exc, TypeError) and len(exc.args) == 4:
        expected, got = exc.args[2], exc.args[3]
        kinds = expected if isinstance(expected, tuple) else (expected,)
        names = " or ".join(getattr(k, "__name__", str(k)) for k in kinds)
        return f"expected {names}, got {type(got).__name__} {_clip(got)}"
    message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    return f"{_clip(value)}: {message}"


def _encodable(_: Any, __: Any, value: str | None) -> None:
    """A lone surrogate ("\\ud83d") is a legal Python string but cannot be sent as UTF-8."""
    if value is not None:
        check_text(value)


_INT: Validator = v.and_(v.instance_of(int), v.not_(v.instance_of(bool), msg="a boolean is not an integer"))
_BOOL: Validator = v.instance_of(bool)  # not 1 or "no": the wire wants true or false
_TEXT: Validator = v.and_(v.instance_of(str), _encodable)


def _one_of(name: str, allowed: Collection[object]) -> Validator:
    def check(_: Any, __: Any, value: object) -> None:
        if not isinstance(value, str) or value not in allowed:
            choices = ", ".join(repr(a) for a in allowed)
            raise ConfigError(name, f"{_clip(value)} is not one of {choices}")

    return check


def _in_range(name: str, low: float, high: float, *, integer: bool = False) -> Validator:
    kind = int if integer else int | float

    def check(_: Any, __: Any, value: float | None) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
            what = "an integer" if integer else "a number"
            raise ConfigError(name, f"{_clip(value)} is not {what} in [{low}, {high}]")

    return check


def _json_object(name: str) -> Validator:
    """A dict with string keys that encodes as strict JSON (no NaN, no lone surrogates)."""

    def check(_: Any, __: Any, value: dict[str, Any] | None) -> None:
        if value is None:
            return
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(name, f"{_clip(value)} must be a dict with string keys (a JSON object)")
        try:
            check_text(json.dumps(value, ensure_ascii=False, allow_nan=False))
        except (TypeError, ValueError, RecursionError) as exc:
            raise ConfigError(name, f"is not a JSON object: {exc}") from None

    return check


def _as_tuple(value: Any) -> Any:
    """Any iterable but a string as a tuple; anything else is left for the validator to refuse."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return value
    return tuple(value)
