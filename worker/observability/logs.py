"""Logging, configured once at each entry point (worker start, CLI, demo).

Every line goes through one handler on the root logger, in one format: JSON lines when stderr is
not a TTY (workers), a console format otherwise (CLI, demo). Reverie's structlog events and the
stdlib records of Celery, kombu and the producer share it, so each event is printed once.

Two processors guard privacy on both paths: ``drop_text`` removes any field that could hold
conversation text, and ``redact_secrets`` masks passwords in URLs and API-key-looking values.
Logs carry ids.
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
QUIET = {
    "celery.app.trace": logging.WARNING,
    "LiteLLM": logging.WARNING,
    "LiteLLM Router": logging.WARNING,
    "LiteLLM Proxy": logging.WARNING,
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "openai": logging.WARNING,
}
"""Loggers held at WARNING whatever the level. Celery's per-task "succeeded"/"ignored"/"raised
expected" lines repeat what Reverie's own ``reflection finished`` / ``reflection failed`` events
say, with less. litellm and the HTTP clients log whole requests (conversation text) at DEBUG and
INFO: they must never reach a log."""
_HANDLER_NAME = "reverie"


def redact(text: str) -> str:
    """Mask ``user:password@`` in URLs and API-key-shaped tokens."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _KEYLIKE.sub("***", text)


def drop_text(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for name in TEXT_FIELDS & event.keys():
        event[name] = "[redacted]"
    return event


def drop_message_copy(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A stdlib record's formatted ``message`` repeats ``event``: keep one."""
    if event.get("message") == event.get("event"):
        event.pop("message", None)
    return event


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for name, value in event.items():
        if isinstance(value, str):
            event[name] = redact(value)
    return event


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is at emit time, not at configure time: a CLI runner or
    pytest may swap (and close) the stream it had when ``configure`` ran."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.set_name(_HANDLER_NAME)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure(level: str = "INFO", *, json: bool | None = None) -> None:
    """JSON lines when stderr is not a TTY (or ``json=True``), a console format otherwise."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    tail: list[Any] = [structlog.processors.format_exc_info] if use_json else []
    structlog.configure(
        processors=[*shared, drop_text, redact_secrets, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        # stdlib records (Celery, kombu, the producer): the same fields, extras kept
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), drop_message_copy, drop_text],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, redact_secrets, renderer],
    )
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if h.get_name() != _HANDLER_NAME]
    handler = _StderrHandler()
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # Python warnings too: one format on stderr
    for name, quiet_level in QUIET.items():
        logging.getLogger(name).setLevel(max(quiet_level, logging.getLevelName(level)))


def is_configured() -> bool:
    """Whether ``configure`` installed its handler on the root logger (and it is still there)."""
    return any(h.get_name() == _HANDLER_NAME for h in logging.getLogger().handlers)


def get_logger(name: str = "reverie") -> Any:
    return structlog.get_logger(name)
