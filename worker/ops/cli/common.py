"""What every ``reverie`` command shares: the typer app, consoles, settings, one-line errors."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.table import Table

from producer.core import describe_errors
from worker.ops.where import redis_where

if TYPE_CHECKING:
    from producer.memories import MemoryReader
    from schemas.settings import Settings
    from worker.memory.history import HistoryLog
    from worker.pipeline.coordinator import Coordinator
    from worker.runtime import Runtime

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="Reverie: background memory for chat apps.")
console = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


@cli.callback()
def _logging() -> None:
    """Every command logs to stderr, at WARNING, in the console format: stdout stays the
    command's own output (``--json`` included). Long-running ones (worker, beat, flower,
    dispatcher) reconfigure with ``REVERIE_LOG_LEVEL``."""
    from worker.observability.logs import configure

    configure("WARNING", json=False)


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings(**overrides: Any) -> Settings:
    from pydantic_settings import SettingsError

    from schemas.settings import Settings

    try:
        return Settings(**overrides)
    except ValidationError as e:
        fail(
            "configuration: "
            + "; ".join(f"REVERIE_{p.split(':')[0].upper()}:{p.split(':', 1)[1]}" for p in describe_errors(e))
        )
    except SettingsError as e:  # a JSON setting that is not JSON (REVERIE_WEBHOOKS, REVERIE_RETENTION)
        field = str(e).split('"')[1] if str(e).count('"') >= 2 else "?"
        fail(f"configuration: REVERIE_{field.upper()}: is not valid JSON")


def redis_unreachable(e: BaseException) -> str:
    """The one way every command says Redis is down: where, and the error class."""
    from schemas.settings import Settings

    try:
        url = Settings().resolved_redis_url()
    except ValidationError:
        url = None
    return f"Redis unreachable at {redis_where(url)} ({type(e).__name__})"


def require_redis_url(s: Settings) -> str:
    url = s.resolved_redis_url()
    if url is None:
        fail("no Redis configured: set REVERIE_REDIS_URL or REDIS_URL (the demo starts its own)")
    return url


def build_runtime(s: Settings) -> Runtime:
    """Redis + Qdrant + extractor. Module-level so tests can hand the CLI a running runtime."""
    from worker.runtime import build_runtime as _build

    return _build(s)


def runtime() -> Runtime:
    from producer.errors import LayoutMismatch
    from worker.errors import ConfigError
    from worker.observability.logs import configure

    s = settings()
    configure(s.log_level)
    require_redis_url(s)
    try:
        return build_runtime(s)
    except (LayoutMismatch, ConfigError) as e:
        fail(str(e))


def coordinator() -> Coordinator:
    """Redis only (no Qdrant, no litellm): for commands that read queues and counters. Refuses
    (one line, exit 2) a deployment laid out for another ``REVERIE_SHARDS``."""
    from producer.errors import LayoutMismatch
    from worker.pipeline.coordinator import Coordinator
    from worker.runtime import check_layout, open_redis, worker_keys

    s = settings()
    require_redis_url(s)
    client = open_redis(s, socket_timeout=5, socket_connect_timeout=3)
    keys = worker_keys(s)
    try:
        check_layout(client, keys, write=False)
    except LayoutMismatch as e:
        client.close()
        fail(str(e))
    return Coordinator(client, keys)


def history_log() -> HistoryLog:
    """A user's memory history lives in Redis: reading it opens no Qdrant."""
    from worker.memory.history import HistoryLog

    coord = coordinator()
    s = settings()
    return HistoryLog(coord.r, coord.keys, retention_s=s.history_retention_s, max_entries=s.history_max_entries)


def build_reader(s: Settings) -> MemoryReader:
    """The hot path's read client. Module-level so tests can hand the CLI an open one."""
    from producer.memories import open_reader

    return open_reader(s)


@contextlib.contextmanager
def reader() -> Iterator[MemoryReader]:
    """The read client (Qdrant + the embedder; no Redis, no litellm unless the embedding model
    needs it): what ``search`` and ``memories`` use, as a chat server would. Closed after the
    command, so a local-mode folder is not held a moment longer than the read."""
    from producer.errors import StoreLocked

    try:
        r = build_reader(settings())
    except StoreLocked as e:
        fail(str(e), code=1)
    try:
        yield r
    finally:
        r.close()


def check_id(name: str, value: str) -> str:
    from schemas.ids import check_id as _check

    try:
        return _check(value)
    except ValueError as e:
        fail(f"{name}: {e}")


def print_json(data: Any) -> None:
    # plain print: rich's print_json would re-indent and colour; scripts want stable JSON
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


TEXT_COLUMNS = frozenset({"content", "reason", "old", "new", "detail"})
"""Free-text columns: cut to fit the terminal with an ellipsis (``--json`` has them whole)."""
ID_COLUMNS = frozenset({"user", "thread", "user_id", "thread_id", "reflection"})
"""Ids may be long (128 characters): shown up to 22, then cut with an ellipsis."""
# Japanese and other wide text takes two columns a character; ``len`` undercounts it, so text
# cells may still be cut by the table itself, which keeps them on one line.


def table(title: str, columns: list[str], rows: list[list[Any]], *, right: tuple[str, ...] = ()) -> None:
    """A table that stays readable at 80 columns: one line per row; short values (numbers, times,
    states) whole; ids up to 22 characters; free text shares what is left. Anything cut ends in
    an ellipsis (``--json`` has it whole)."""
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    natural = [max([len(c), *(len(row[n]) for row in cells)]) for n, c in enumerate(columns)]
    widths = list(natural)
    room = console.width - 3 * (len(columns) - 1)  # padding and the separator between columns
    ids = [n for n, c in enumerate(columns) if c in ID_COLUMNS]
    texts = [n for n, c in enumerate(columns) if c in TEXT_COLUMNS]
    for n in ids:
        widths[n] = min(natural[n], 22)
    while sum(widths) > room and any(widths[n] > 6 for n in ids + texts):
        n = max(ids + texts, key=lambda i: (widths[i] if i in texts else widths[i] * 2, i))  # ids give way last
        widths[n] -= 1
    if texts:
        spare = room - sum(w for n, w in enumerate(widths) if n not in texts)
        for n in texts:
            widths[n] = max(8, min(natural[n], spare // len(texts)))
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), show_edge=False, pad_edge=False)
    for n, col in enumerate(columns):
        t.add_column(col, justify="right" if col in right else "left", no_wrap=True, width=widths[n])
    for row in cells:
        t.add_row(*(_cut(v, widths[n]) for n, v in enumerate(row)))
    console.print(t)


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())  # one line per row
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def short_time(ms: int) -> str:
    """``12-01 21:30:05`` (UTC): a timestamp in 14 columns."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%m-%d %H:%M:%S")
