"""The ``reverie`` command (typer + rich). Errors are one line and a non-zero exit code."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from producer.core import describe_errors

if TYPE_CHECKING:
    from worker.runtime import Runtime

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="Reverie: background memory for chat apps.")
console = Console()
err = Console(stderr=True)


def _settings(**overrides: Any) -> Any:
    from schemas.settings import Settings

    try:
        return Settings(**overrides)
    except ValidationError as e:
        _fail(
            "configuration: "
            + "; ".join(f"REVERIE_{p.split(':')[0].upper()}:{p.split(':', 1)[1]}" for p in describe_errors(e))
        )


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _runtime() -> Runtime:
    from worker.logs import configure
    from worker.runtime import build_runtime

    settings = _settings()
    configure(settings.log_level)
    if settings.resolved_redis_url() is None:
        _fail("no Redis configured: set REVERIE_REDIS_URL or REDIS_URL (the demo starts its own)")
    return build_runtime(settings)


@cli.command()
def demo(timeout: Annotated[float, typer.Option(help="Seconds to wait for reflections.")] = 60.0) -> None:
    """Run the whole pipeline on embedded defaults and show one reflection per burst."""
    from worker.demo import run_demo
    from worker.logs import configure

    # Own key prefix: the demo resets its keys, which must never be a deployment's.
    settings = _settings(after_seconds=1.0, max_wait_s=30.0, namespace="demo", key_prefix="reverie-demo")
    configure("WARNING")
    report = run_demo(settings, console, timeout_s=timeout)
    ok = all(report.reflections[k] == report.bursts[k] for k in report.bursts)
    console.print(
        f"{sum(report.bursts.values())} bursts → {sum(report.reflections.values())} reflections "
        f"({'one per burst' if ok else 'MISMATCH'}); outcomes: {dict(report.outcomes)}"
    )
    if not ok:
        raise typer.Exit(1)


@cli.command()
def worker(
    concurrency: Annotated[int | None, typer.Option(help="Threads (default REVERIE_WORKER_CONCURRENCY).")] = None,
    loglevel: str = "INFO",
) -> None:
    """Start a Celery worker (with a dispatcher thread): ``celery -A worker.app worker``."""
    from worker.app import create_app
    from worker.logs import configure

    settings = _settings()
    configure(settings.log_level)
    app = create_app(settings)
    argv = ["worker", f"--loglevel={loglevel}", "-Q", "reverie"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    app.worker_main(argv)


@cli.command()
def dispatcher() -> None:
    """Run a standalone dispatcher (workers run one each by default)."""
    import threading

    from worker.app import create_app, make_dispatcher
    from worker.logs import configure

    settings = _settings()
    configure(settings.log_level)
    stop = threading.Event()
    try:
        make_dispatcher(create_app(settings)).run(stop)
    except KeyboardInterrupt:
        stop.set()


@cli.command()
def submit(
    user: str,
    thread: str,
    text: str,
    role: Annotated[str, typer.Option(help="user|assistant|system|tool")] = "user",
    after: Annotated[float | None, typer.Option(help="Debounce seconds.")] = None,
    message_id: Annotated[str | None, typer.Option("--id", help="Message id (idempotent).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Submit one turn, as a chat server would."""
    from producer import InvalidSubmission, Producer, ProducerConfig

    settings = _settings()
    url = settings.resolved_redis_url()
    if url is None:
        _fail("no Redis configured: set REVERIE_REDIS_URL or REDIS_URL")
    cfg = ProducerConfig(
        redis_url=url,
        key_prefix=settings.key_prefix,
        after_seconds=settings.after_seconds,
        max_wait_s=settings.max_wait_s,
        on_unavailable="raise",
        timeout_s=max(settings.redis_timeout_s, 2.0),
    )
    message: dict[str, Any] = {"role": role, "content": text}
    if message_id:
        message["id"] = message_id
    try:
        with Producer(cfg) as producer:
            receipt = producer.submit(user, thread, [message], after_seconds=after)
    except InvalidSubmission as e:
        _fail(str(e))
    except ConnectionError as e:
        _fail(str(e))
    if as_json:
        console.print_json(receipt.model_dump_json())
    else:
        console.print(
            f"{receipt.status}: {receipt.accepted} turn(s), generation {receipt.generation}, due {receipt.due_at_s}"
        )


def _check_id(name: str, value: str) -> None:
    from schemas.ids import check_id

    try:
        check_id(value)
    except ValueError as e:
        _fail(f"{name}: {e}")


@cli.command()
def search(
    user: str,
    query: str,
    limit: int = 5,
    kind: str | None = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Search one user's memories (the chat server's hot path)."""
    _check_id("user", user)
    rt = _runtime()
    hits = rt.store.search(user, query, kind=kind, limit=limit)
    _records(hits, as_json, title=f"search {user}")


@cli.command()
def memories(user: str, kind: str | None = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List one user's memories."""
    _check_id("user", user)
    rt = _runtime()
    _records(rt.store.list(user, kind=kind), as_json, title=f"memories of {user}")


def _records(records: list[Any], as_json: bool, *, title: str) -> None:
    if as_json:
        console.print_json(json.dumps([r.model_dump(mode="json") for r in records]))
        return
    table = Table(title=title)
    for col in ("id", "kind", "content", "updated", "score"):
        table.add_column(col)
    for r in records:
        score = "" if r.score is None else f"{r.score:.3f}"
        table.add_row(r.id[:8], r.kind, r.content, r.updated_at.isoformat(timespec="seconds"), score)
    console.print(table)


@cli.command()
def pending(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Threads waiting for reflection: due time and turns buffered."""
    import time

    from producer.keys import split_member

    rt = _runtime()
    keys = rt.coordinator.keys
    now_ms = time.time() * 1000
    rows = []
    for raw, score in rt.redis.zrange(keys.due_ss, 0, 999, withscores=True):
        user, thread = split_member(raw)
        rows.append(
            {
                "user_id": user,
                "thread_id": thread,
                "due_in_s": round((score - now_ms) / 1000, 2),
                "turns": rt.redis.llen(keys.buffer(user, thread)),
            }
        )
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title=f"pending ({len(rows)})")
    for col in ("user_id", "thread_id", "due_in_s", "turns"):
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)


@cli.command()
def stats(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Counters: turns enqueued, reflections by outcome, LLM calls and tokens."""
    rt = _runtime()
    data = rt.coordinator.stats()
    data["dead_letters"] = rt.redis.hlen(rt.coordinator.keys.dlq)
    if as_json:
        console.print_json(json.dumps(data))
        return
    table = Table(title="reverie stats")
    table.add_column("counter")
    table.add_column("value", justify="right")
    for k in sorted(data):
        table.add_row(k, str(data[k]))
    console.print(table)


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # one clear line, no traceback, for anything unexpected
        if os.environ.get("REVERIE_DEBUG"):
            raise
        from worker.logs import redact

        err.print(f"[red]error:[/] {type(e).__name__}: {redact(str(e))}", highlight=False)
        sys.exit(1)
