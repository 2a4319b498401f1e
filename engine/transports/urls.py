"""URL policy and log redaction.

Realtime APIs authenticate with a bearer token or an API key, sometimes in the
query string, so two rules hold at this edge: plain ``ws://`` never leaves the
machine unless the caller says so, and nothing secret reaches a log line.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit, urlunsplit

from engine.transports.base import TransportSettings

REDACTED = "***"
"""What a secret is replaced with in logs."""

SECRET_QUERY_PARAMS = frozenset({"key", "api_key", "token"})
"""Query parameters whose values :func:`redact_url` hides (compared case-insensitively)."""


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1`` (also IPv4-mapped)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_url(url: str, settings: TransportSettings | None = None) -> None:
    """Refuse a URL the transports must not open.

    ``wss://`` is always allowed. ``ws://`` sends credentials in clear, so it is
    allowed only to a loopback host, or anywhere when ``settings.allow_insecure``.

    Raises:
        ValueError: for another scheme, a missing host, or ``ws://`` to a
            remote host without ``allow_insecure``. The message shows the URL
            redacted.
    """
    allow_insecure = settings.allow_insecure if settings is not None else False
    parts = urlsplit(url)
    shown = redact_url(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} in {shown}: use wss://")
    if not parts.hostname:
        raise ValueError(f"URL has no host: {shown}")
    if parts.scheme == "ws" and not allow_insecure and not is_loopback(parts.hostname):
        raise ValueError(
            f"refusing plain ws:// to non-loopback host {parts.hostname!r} ({shown}): "
            "use wss://, or set TransportSettings(allow_insecure=True)"
        )


def _is_secret_header(name: str) -> bool:
    lowered = name.lower()
    return lowered == "authorization" or "key" in lowered or "token" in lowered


def redact_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Copy ``headers`` for a log line, hiding credentials.

    Hides ``Authorization`` (any case) and every header whose name contains
    ``key`` or ``token`` (``api-key``, ``X-Api-Key``, ``OpenAI-Token``...).
    """
    if not headers:
        return {}
    return {name: REDACTED if _is_secret_header(name) else value for name, value in headers.items()}


def redact_url(url: str) -> str:
    """Return ``url`` fit for a log line.

    Hides the values of the ``key``, ``api_key`` and ``token`` query parameters
    and any password in the user-info part; everything else is kept byte for
    byte. Works on a bare path with a query (``/v1/realtime?key=...``) too.
    """
    parts = urlsplit(url)
    query = "&".join(_redact_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", f":{REDACTED}@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_pair(pair: str) -> str:
    name, sep, _ = pair.partition("=")
    if sep and unquote(name).lower() in SECRET_QUERY_PARAMS:
        return f"{name}={REDACTED}"
    return pair
