"""The GA session fields beyond audio and function tools, typed and validated at construction.

Noise reduction, reasoning effort, truncation, prompt references, MCP tools
and the object forms of ``tool_choice`` (docs/protocol.md §4.5). Each class
renders its GA JSON with ``to_wire()`` and is rebuilt from it by
``from_wire()`` (recordings replay through it). Which provider accepts which
field is the profile's business (``engine.profiles``); these classes only
check the values.

MCP ``headers`` and ``authorization`` hold credentials: they are kept as
:class:`~engine.redaction.Secret` (hidden in reprs, redacted from logs and
recordings) and revealed only in ``to_wire()``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
from attrs import validators as v

from engine.protocol._checks import (
    _TEXT,
    ConfigError,
    _as_tuple,
    _clip,
    _in_range,
    _json_object,
    _named,
    _one_of,
)
from engine.redaction import Secret

NOISE_REDUCTION_TYPES = ("near_field", "far_field")
"""``near_field``: headsets and phones; ``far_field``: laptops and room microphones."""
REASONING_EFFORTS = ("minimal", "low", "medium", "high", "xhigh")
TRUNCATION_MODES = ("auto", "disabled")
INCLUDE_VALUES = ("item.input_audio_transcription.logprobs",)
APPROVAL_MODES = ("always", "never")


@attrs.frozen(kw_only=True)
class NoiseReduction:
    """Input noise reduction (``audio.input.noise_reduction``); ``strength`` unset keeps the server's."""

    type: str = attrs.field(validator=_one_of("noise_reduction.type", NOISE_REDUCTION_TYPES))
    # GA documents no upper bound ("higher values apply more suppression", default 1).
    strength: float | None = attrs.field(
        default=None, validator=_in_range("noise_reduction.strength", 0.0, sys.float_info.max)
    )

    def to_wire(self) -> dict[str, Any]:
        """GA ``noise_reduction`` object."""
        out: dict[str, Any] = {"type": self.type}
        if self.strength is not None:
            out["strength"] = self.strength
        return out

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> NoiseReduction:
        """The inverse of :meth:`to_wire`."""
        return cls(type=data.get("type"), strength=data.get("strength"))  # type: ignore[arg-type]


@attrs.frozen(kw_only=True)
class Reasoning:
    """Reasoning effort of reasoning-capable models (``gpt-realtime-2``)."""

    effort: str = attrs.field(validator=_one_of("reasoning.effort", REASONING_EFFORTS))

    def to_wire(self) -> dict[str, Any]:
        """GA ``reasoning`` object."""
        return {"effort": self.effort}


@attrs.frozen(kw_only=True)
class RetentionRatio:
    """Truncation that keeps ``retention_ratio`` of the conversation's tokens when it overflows.

    ``post_instructions`` caps the conversation's tokens after the instructions
    (unset: the model's own limit).
    """

    TYPE: ClassVar[str] = "retention_ratio"
    retention_ratio: float = attrs.field(validator=_in_range("truncation.retention_ratio", 0.0, 1.0))
    post_instructions: int | None = attrs.field(
        default=None,
        validator=_in_range("truncation.token_limits.post_instructions", 1, sys.maxsize, integer=True),
    )

    @retention_ratio.validator
    def _required(self, _: Any, value: float | None) -> None:
        if value is None:
            raise ConfigError("truncation.retention_ratio", "is required")

    def to_wire(self) -> dict[str, Any]:
        """GA ``retention_ratio`` truncation object."""
        out: dict[str, Any] = {"type": self.TYPE, "retention_ratio": self.retention_ratio}
        if self.post_instructions is not None:
            out["token_limits"] = {"post_instructions": self.post_instructions}
        return out


Truncation = str | RetentionRatio
"""``"auto"``, ``"disabled"`` or a :class:`RetentionRatio`."""


def _check_truncation(_: Any, __: Any, value: object) -> None:
    if value is None or isinstance(value, RetentionRatio):
        return
    if not isinstance(value, str) or value not in TRUNCATION_MODES:
        raise ConfigError("truncation", f"{_clip(value)} must be 'auto', 'disabled' or a RetentionRatio")


def truncation_to_wire(value: Truncation) -> Any:
    """``truncation`` as GA JSON."""
    return value.to_wire() if isinstance(value, RetentionRatio) else value


def truncation_from_wire(data: Any) -> Truncation:
    """The inverse of :func:`truncation_to_wire`."""
    if isinstance(data, Mapping):
        limits = data.get("token_limits") or {}
        return RetentionRatio(
            retention_ratio=data.get("retention_ratio"),  # type: ignore[arg-type]
            post_instructions=limits.get("post_instructions"),
        )
    out: Truncation = data
    return out


def _check_variables(_: Any, __: Any, value: dict[str, Any] | None) -> None:
    _json_object("prompt.variables")(_, __, value)
    for name, item in (value or {}).items():
        if not isinstance(item, str | dict):
            raise ConfigError(
                f"prompt.variables.{name}", f"{_clip(item)} must be a string or an input object"
            )


@attrs.frozen(kw_only=True)
class PromptRef:
    """A stored prompt template (``prompt``): its id, optional version and variables.

    A variable is a string or a GA input object (``{"type": "input_text", ...}``).
    """

    id: str = attrs.field(validator=_named("prompt.id", _TEXT, v.min_len(1)))
    version: str | None = attrs.field(default=None, validator=_named("prompt.version", v.optional(_TEXT)))
    variables: dict[str, Any] | None = attrs.field(default=None, validator=_check_variables)

    def to_wire(self) -> dict[str, Any]:
        """GA ``prompt`` object (unset fields left out)."""
        out: dict[str, Any] = {"id": self.id}
        if self.version is not None:
            out["version"] = self.version
        if self.variables is not None:
            out["variables"] = self.variables
        return out

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> PromptRef:
        """The inverse of :meth:`to_wire`."""
        return cls(id=data.get("id"), version=data.get("version"), variables=data.get("variables"))  # type: ignore[arg-type]


def _names(name: str) -> Any:
    return _named(name, v.deep_iterable(_TEXT, v.instance_of(tuple)))


@attrs.frozen(kw_only=True)
class ApprovalFilter:
    """Which MCP tools need the application's approval (``always``) and which never do."""

    always: tuple[str, ...] = attrs.field(
        default=(), converter=_as_tuple, validator=_names("require_approval")
    )
    never: tuple[str, ...] = attrs.field(
        default=(), converter=_as_tuple, validator=_names("require_approval")
    )

    def to_wire(self) -> dict[str, Any]:
        """GA approval filter (``{"always": {"tool_names": [...]}, ...}``)."""
        out: dict[str, Any] = {}
        for key, names in (("always", self.always), ("never", self.never)):
            if names:
                out[key] = {"tool_names": list(names)}
        return out


def _as_secrets(value: Any) -> Any:
    """Header values as Secrets; anything but a mapping of strings is left for the validator."""
    if not isinstance(value, Mapping):
        return value
    try:
        return {k: v if isinstance(v, Secret) else Secret(v) for k, v in value.items()}
    except ValueError:
        return value  # an empty or non-string value: the validator names it


def _as_secret(value: Any) -> Any:
    if isinstance(value, str) and value:
        return Secret(value)
    return value


def _check_url(_: Any, __: Any, value: str) -> None:
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise ConfigError("tools.server_url", f"{_clip(value)} must be an http(s) URL")


def _check_approval(_: Any, __: Any, value: object) -> None:
    if value is None or isinstance(value, ApprovalFilter) or value in APPROVAL_MODES:
        return
    raise ConfigError(
        "tools.require_approval", f"{_clip(value)} must be 'always', 'never' or an ApprovalFilter"
    )


@attrs.frozen(kw_only=True)
class McpTool:
    """A remote MCP server whose tools the model may call (the server calls them, not us).

    Attributes:
        server_label: the name the model and ``tool_choice`` use for the server.
        server_url: the server's http(s) URL.
        allowed_tools: the tool names the model may use (``None``: all of them).
        require_approval: ``"always"``, ``"never"`` or an :class:`ApprovalFilter`
            (``None``: the server's default).
        headers: HTTP headers for the MCP server; values are credentials, kept as Secrets.
        authorization: an OAuth access token for the server, kept as a Secret.
        description: tells the model what the server is for.
    """

    TYPE: ClassVar[str] = "mcp"
    server_label: str = attrs.field(validator=_named("tools.server_label", _TEXT, v.min_len(1)))
    server_url: str = attrs.field(validator=_check_url)
    allowed_tools: tuple[str, ...] | None = attrs.field(
        default=None,
        converter=attrs.converters.optional(_as_tuple),
        validator=v.optional(_names("tools.allowed_tools")),
    )
    require_approval: str | ApprovalFilter | None = attrs.field(default=None, validator=_check_approval)
    headers: dict[str, Secret] | None = attrs.field(
        default=None,
        converter=_as_secrets,
        validator=_named(
            "tools.headers",
            v.optional(v.deep_mapping(_TEXT, v.instance_of(Secret), v.instance_of(dict))),
        ),
    )
    authorization: Secret | None = attrs.field(
        default=None,
        converter=_as_secret,
        validator=_named("tools.authorization", v.optional(v.instance_of(Secret))),
    )
    description: str | None = attrs.field(
        default=None, validator=_named("tools.server_description", v.optional(_TEXT))
    )

    def to_wire(self) -> dict[str, Any]:
        """GA ``mcp`` tool object, credentials revealed (for the socket only)."""
        out: dict[str, Any] = {
            "type": self.TYPE,
            "server_label": self.server_label,
            "server_url": self.server_url,
        }
        if self.allowed_tools is not None:
            out["allowed_tools"] = list(self.allowed_tools)
        if self.require_approval is not None:
            approval = self.require_approval
            out["require_approval"] = approval.to_wire() if isinstance(approval, ApprovalFilter) else approval
        if self.headers is not None:
            out["headers"] = {k: s.reveal() for k, s in self.headers.items()}
        if self.authorization is not None:
            out["authorization"] = self.authorization.reveal()
        if self.description is not None:
            out["server_description"] = self.description
        return out

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> McpTool:
        """The inverse of :meth:`to_wire`."""
        approval = data.get("require_approval")
        if isinstance(approval, Mapping):
            approval = ApprovalFilter(
                always=(approval.get("always") or {}).get("tool_names", ()),
                never=(approval.get("never") or {}).get("tool_names", ()),
            )
        return cls(
            server_label=data.get("server_label"),  # type: ignore[arg-type]
            server_url=data.get("server_url"),  # type: ignore[arg-type]
            allowed_tools=data.get("allowed_tools"),
            require_approval=approval,
            headers=data.get("headers"),
            authorization=data.get("authorization"),
            description=data.get("server_description"),
        )


@attrs.frozen(kw_only=True)
class McpToolChoice:
    """``tool_choice`` forcing a tool of an MCP server (``name`` unset: any of its tools)."""

    server_label: str = attrs.field(validator=_named("tool_choice.server_label", _TEXT, v.min_len(1)))
    name: str | None = attrs.field(default=None, validator=_named("tool_choice.name", v.optional(_TEXT)))

    def to_wire(self) -> dict[str, Any]:
        """GA ``{"type": "mcp", ...}`` tool choice."""
        out: dict[str, Any] = {"type": "mcp", "server_label": self.server_label}
        if self.name is not None:
            out["name"] = self.name
        return out
