"""The OpenAI Realtime GA schema (openai-python's generated models) as a test oracle.

openai-python's models are pydantic models configured with ``extra="allow"``:
an unknown key validates fine and even shows up in ``model_dump()``. So a
validation pass proves nothing about invented fields. :func:`assert_ga_valid`
therefore validates *and* walks the payload beside the validated model,
requiring every key to be a declared field of the model it landed in (only
free-form values such as ``parameters`` or ``metadata`` are not descended).
"""

from __future__ import annotations

import typing
from collections.abc import Collection
from functools import cache
from typing import Any

import pydantic
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent

INWORLD_EXTRAS: frozenset[str] = frozenset(
    {"session.temperature", "session.audio.output.model", "session.providerData"}
)
"""Documented Inworld-only extensions over GA (docs/protocol.md §4.4), as payload paths."""


@cache
def _adapter(union: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(union)


def ga_members(union: Any) -> tuple[type[pydantic.BaseModel], ...]:
    """The member classes of an openai ``Annotated[Union[...], ...]`` event union."""
    inner = typing.get_args(union)[0] if typing.get_origin(union) is typing.Annotated else union
    return typing.get_args(inner)


def ga_types(union: Any) -> set[str]:
    """The ``type`` literals of the members of an openai event union."""
    out: set[str] = set()
    for member in ga_members(union):
        (literal,) = typing.get_args(member.model_fields["type"].annotation)
        out.add(literal)
    return out


def _undeclared_keys(payload: Any, value: Any, path: str, allowed: Collection[str]) -> list[str]:
    """Paths of payload keys that are not declared fields of the validated models."""
    if isinstance(value, pydantic.BaseModel):
        if not isinstance(payload, dict):
            return [f"{path or '<root>'}: payload is not an object"]
        fields = {(info.alias or name): name for name, info in type(value).model_fields.items()}
        bad: list[str] = []
        for key, sub in payload.items():
            where = f"{path}.{key}" if path else key
            if key not in fields:
                if where not in allowed:
                    bad.append(where)
                continue
            bad.extend(_undeclared_keys(sub, getattr(value, fields[key]), where, allowed))
        return bad
    if isinstance(value, list) and isinstance(payload, list):
        bad = []
        for i, (p, v) in enumerate(zip(payload, value, strict=True)):
            bad.extend(_undeclared_keys(p, v, f"{path}[{i}]", allowed))
        return bad
    return []  # a scalar, or a free-form dict/object (JSON schema, metadata): nothing declared below


def assert_ga_valid(payload: dict[str, Any], union: Any, allowed_extras: Collection[str] = ()) -> Any:
    """Validate ``payload`` against ``union`` strictly and reject keys GA does not declare.

    ``allowed_extras`` lists payload paths (``session.temperature``) that may be
    undeclared. Returns the validated model. Raises ``AssertionError``.
    """
    try:
        model = _adapter(union).validate_python(payload, strict=True)
    except pydantic.ValidationError as exc:
        raise AssertionError(f"not valid GA {payload.get('type')!r}: {exc}") from None
    assert model.type == payload["type"], (model.type, payload["type"])
    bad = _undeclared_keys(payload, model, "", frozenset(allowed_extras))
    assert not bad, f"keys not in the GA schema of {payload['type']!r}: {bad}"
    return model


def assert_ga_client_event(payload: dict[str, Any], allowed_extras: Collection[str] = INWORLD_EXTRAS) -> Any:
    """A client event payload is GA (Inworld's documented extensions allowed by default)."""
    return assert_ga_valid(payload, RealtimeClientEvent, allowed_extras)


def assert_ga_server_event(payload: dict[str, Any], allowed_extras: Collection[str] = ()) -> Any:
    """A server event payload is GA."""
    return assert_ga_valid(payload, RealtimeServerEvent, allowed_extras)
