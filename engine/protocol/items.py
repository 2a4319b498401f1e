"""Value objects carried inside wire events: items, content parts, responses, errors.

One class per concept, with every field optional where GA allows it, because
servers differ in what they fill in (Inworld omits ``name`` in places, sends
legacy content types such as ``text``/``audio``, and a top-level ``usage``).
"""

from __future__ import annotations

import base64
from typing import Any

import attrs

from engine.errors import UsageTypeError, UsageValueError

IMAGE_MIME_TYPES = ("image/png", "image/jpeg")
"""The image formats GA documents for an ``input_image`` part."""
IMAGE_DETAILS = ("auto", "low", "high")


@attrs.frozen(kw_only=True)
class ContentPart:
    """One part of a message: ``input_text``, ``input_audio``, ``output_text``, ``output_audio``...

    ``audio`` is base64 and is normally absent in server echoes. An
    ``input_image`` part carries ``image_url`` (a ``data:`` URI) and ``detail``.
    """

    type: str
    text: str | None = None
    transcript: str | None = None
    audio: str | None = None
    image_url: str | None = None
    detail: str | None = None


@attrs.frozen(kw_only=True)
class Item:
    """A conversation item: a ``message``, ``function_call`` or ``function_call_output``.

    Fields that do not apply to the item's ``type`` stay ``None``.
    """

    type: str
    id: str | None = None
    object: str | None = None
    status: str | None = None
    role: str | None = None
    content: tuple[ContentPart, ...] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None
    phase: str | None = None
    """On models that speak a preamble, an assistant message's ``commentary`` (the preamble)
    or ``final_answer`` (docs/protocol.md §5.1); ``None`` elsewhere."""

    @classmethod
    def user_text(cls, text: str, *, id: str | None = None) -> Item:
        """A user message with one ``input_text`` part."""
        return cls(type="message", id=id, role="user", content=(ContentPart(type="input_text", text=text),))

    @classmethod
    def user_image(
        cls, image_url: str, *, detail: str | None = None, text: str | None = None, id: str | None = None
    ) -> Item:
        """A user message with an ``input_image`` part (and an ``input_text`` part if ``text`` is given)."""
        if detail is not None and detail not in IMAGE_DETAILS:
            raise UsageValueError(f"detail must be one of {IMAGE_DETAILS}, got {detail!r}")
        parts = [ContentPart(type="input_image", image_url=image_url, detail=detail)]
        if text is not None:
            parts.append(ContentPart(type="input_text", text=text))
        return cls(type="message", id=id, role="user", content=tuple(parts))

    @classmethod
    def system_text(cls, text: str, *, id: str | None = None) -> Item:
        """A system message with one ``input_text`` part."""
        return cls(type="message", id=id, role="system", content=(ContentPart(type="input_text", text=text),))

    @classmethod
    def assistant_text(cls, text: str, *, id: str | None = None) -> Item:
        """An assistant message with one ``output_text`` part (GA cannot create assistant audio)."""
        return cls(
            type="message", id=id, role="assistant", content=(ContentPart(type="output_text", text=text),)
        )

    @classmethod
    def function_call(cls, call_id: str, name: str, arguments: str, *, id: str | None = None) -> Item:
        """A function call the model made earlier (for restoring history)."""
        return cls(type="function_call", id=id, call_id=call_id, name=name, arguments=arguments)

    @classmethod
    def function_call_output(cls, call_id: str, output: str, *, id: str | None = None) -> Item:
        """The answer to a function call."""
        return cls(type="function_call_output", id=id, call_id=call_id, output=output)

    @property
    def is_preamble(self) -> bool:
        """An assistant preamble (``phase: "commentary"``): spoken, but not the turn's answer."""
        return self.phase == "commentary"

    @property
    def text(self) -> str:
        """The text or transcript of every part, joined (empty for non-messages)."""
        parts = self.content or ()
        return "".join(p.text if p.text is not None else (p.transcript or "") for p in parts)


@attrs.frozen(kw_only=True)
class Usage:
    """Token usage of one response; details are kept raw because providers differ."""

    total_tokens: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    input_token_details: dict[str, Any] | None = None
    output_token_details: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class Response:
    """The response object of ``response.created`` / ``response.done``."""

    id: str | None = None
    object: str | None = None
    status: str | None = None
    status_details: dict[str, Any] | None = None
    output: tuple[Item, ...] = ()
    usage: Usage | None = None
    conversation_id: str | None = None
    output_modalities: tuple[str, ...] | None = None
    audio: dict[str, Any] | None = None
    max_output_tokens: int | str | None = None
    metadata: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class ErrorDetail:
    """The ``error`` object of an ``error`` event. GA requires ``type`` and ``message``."""

    type: str | None = None
    code: str | None = None
    message: str = ""
    param: str | None = None
    event_id: str | None = None


@attrs.frozen(kw_only=True)
class RateLimit:
    """One entry of ``rate_limits.updated``."""

    name: str | None = None
    limit: int | None = None
    remaining: int | None = None
    reset_seconds: float | None = None


def image_data_url(
    data: bytes | bytearray | memoryview | None, mime: str = "image/png", url: str | None = None
) -> str:
    """The ``image_url`` of an ``input_image`` part: ``data`` as a base64 ``data:`` URI, or ``url`` as given.

    Raises:
        UsageTypeError: ``data`` is not bytes-like, or ``url`` not a string.
        UsageValueError: both or neither of ``data`` and ``url``; a MIME type GA does not take;
            a ``url`` that is neither ``data:image/`` nor ``https://``.
    """
    if (data is None) == (url is None):
        raise UsageValueError("give the image as data (bytes) or as url, not both or neither")
    if url is not None:
        if not isinstance(url, str):
            raise UsageTypeError(f"url must be a str, got {type(url).__name__}")
        if not url.startswith(("data:image/", "https://")):
            raise UsageValueError(f"url must be a data:image/ URI or an https:// URL, got {url[:40]!r}")
        return url
    if not isinstance(data, bytes | bytearray | memoryview):
        raise UsageTypeError(f"data must be bytes, got {type(data).__name__}")
    if mime not in IMAGE_MIME_TYPES:
        raise UsageValueError(f"mime must be one of {IMAGE_MIME_TYPES}, got {mime!r}")
    if not data:
        raise UsageValueError("the image is empty")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
