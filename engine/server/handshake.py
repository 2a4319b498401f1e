"""The HTTP upgrade check, as Inworld's and OpenAI's endpoints do it (docs/protocol.md §1.1, §1.2).

Inworld's form: an ``Authorization`` header, ``Basic <key>`` or ``Bearer <jwt>``
(401 without), and the query parameters ``key=<session id>`` and
``protocol=realtime`` (400 without). OpenAI's form, recognised by a ``model``
query parameter without ``key``: ``Authorization: Bearer <key>`` (401 with
another scheme) and a non-empty ``model`` (400 without). With an expected
credential configured, a different one is refused with 401.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Literal
from urllib.parse import parse_qs, urlsplit

Refusal = tuple[int, str]
Dialect = Literal["inworld", "openai"]
"""Whose endpoint a connection came to, by its handshake (the server acts on it)."""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def check_request(
    path: str, headers: Mapping[str, str], *, expected_key: str | None = None
) -> Refusal | None:
    """``(status, body)`` to refuse the upgrade, or ``None`` to accept it."""
    authorization = (_header(headers, "authorization") or "").strip()
    if not authorization:
        return (401, "Unauthorized: the Authorization header is required")
    scheme, _, credential = authorization.partition(" ")
    credential = credential.strip()
    if scheme.lower() not in ("basic", "bearer") or not credential:
        return (401, "Unauthorized: use 'Authorization: Basic <key>' or 'Bearer <jwt>'")
    query = parse_qs(urlsplit(path).query, keep_blank_values=True)
    if dialect_of(path) == "openai":
        refusal = _check_openai(scheme, query)
        if refusal is not None:
            return refusal
    elif not query.get("key", [""])[0]:
        return (400, "Bad Request: the 'key' query parameter (a session id) is required")
    elif query.get("protocol", [""])[0] != "realtime":
        return (400, "Bad Request: the 'protocol=realtime' query parameter is required")
    if expected_key is not None and not hmac.compare_digest(credential.encode(), expected_key.encode()):
        return (401, "Unauthorized: invalid credentials")
    return None


def dialect_of(path: str) -> Dialect:
    """``"openai"`` for OpenAI's form (a ``model`` query parameter without ``key``), else ``"inworld"``."""
    query = parse_qs(urlsplit(path).query, keep_blank_values=True)
    return "openai" if "model" in query and "key" not in query else "inworld"


def _check_openai(scheme: str, query: dict[str, list[str]]) -> Refusal | None:
    if scheme.lower() != "bearer":
        return (401, "Unauthorized: use 'Authorization: Bearer <key>'")
    if not query["model"][0]:
        return (400, "Bad Request: the 'model' query parameter is required")
    return None
