"""Where a Redis URL points, for messages: host, port and database, never credentials."""

from __future__ import annotations

from urllib.parse import urlsplit


def redis_where(url: str | None) -> str:
    """``host:port/db`` of a Redis URL (or its socket path), never its credentials."""
    if not url:
        return "(no Redis configured)"
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or '?'}:{parts.port or 6379}{parts.path or ''}"
