"""What every ``reverie`` command shares: the typer app, consoles, settings, one-line errors."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from producer.core import describe_errors

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
    from schemas.settings import Settings

    try:
        return Settings(**overrides)
    except ValidationError as e:
        fail(
            "configuration: "
            + "; ".join(f"REVERIE_{p.split(':')[0].upper()}:{p.split(':', 1)[1]}" for p in describe_errors(e))
        )


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
    from worker.observability.logs import configure

    s = settings()
    configure(s.log_level)
    require_redis_url(s)
    return build_runtime(s)


def coordinator() -> Coordinator:
    """Redis only (no Qdrant, no litellm): for commands that read queues and counters."""
    import redis

    from worker.pipeline.coordinator import Coordinator
    from worker.pipeline.keys import WorkerKeys

    s = settings()
    client = redis.Redis.from_url(require_redis_url(s), socket_timeout=5, socket_connect_timeout=3)
    return Coordinator(client, WorkerKeys(s.key_prefix))


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


def reader() -> MemoryReader:
    """The read client (Qdrant + the embedder; no Redis, no litellm unless the embedding model
    needs it): what ``search`` and ``memories`` use, as a chat server would."""
    return build_reader(settings())


def check_id(name: str, value: str) -> str:
    from schemas.ids import check_id as _check

    try:
        return _check(value)
    except ValueError as e:
        fail(f"{name}: {e}")


def print_json(data: Any) -> None:
    # plain print: rich's print_json would re-indent and colour; scripts want stable JSON
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def table(title: str, columns: list[str], rows: list[list[Any]], *, right: tuple[str, ...] = ()) -> None:
    t = Table(title=title)
    for col in columns:
        t.add_column(col, justify="right" if col in right else "left")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    console.print(t)
