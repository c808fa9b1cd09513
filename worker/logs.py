"""structlog configuration, done once at each entry point (worker start, CLI).

Two processors guard privacy: ``drop_text`` removes any field that could hold conversation
text, and ``redact_secrets`` masks passwords in URLs and API-key-looking values. Logs carry ids.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

TEXT_FIELDS = frozenset({"content", "messages", "text", "turns", "prompt", "query", "memory"})
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@", re.I)
_KEYLIKE = re.compile(r"\b(sk-[A-Za-z0-9_-]{6,}|key-[A-Za-z0-9_-]{10,})")


def redact(text: str) -> str:
    """Mask ``user:password@`` in URLs and API-key-shaped tokens."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _KEYLIKE.sub("***", text)


def drop_text(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for name in TEXT_FIELDS & event.keys():
        event[name] = "[redacted]"
    return event


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for name, value in event.items():
        if isinstance(value, str):
            event[name] = redact(value)
    return event


def _current_stderr(*_: Any) -> structlog.PrintLogger:
    """Resolve ``sys.stderr`` at log time, not at configure time: a CLI runner or pytest may
    swap (and close) the stream it had when ``configure`` ran."""
    return structlog.PrintLogger(sys.stderr)


def configure(level: str = "INFO", *, json: bool | None = None) -> None:
    """JSON lines when stderr is not a TTY (or ``json=True``), coloured console otherwise."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            drop_text,
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_current_stderr,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "reverie") -> Any:
    return structlog.get_logger(name)
