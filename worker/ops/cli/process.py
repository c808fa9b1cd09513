"""Long-running processes: the demo, a Celery worker, beat, Flower and a standalone dispatcher.

``worker``, ``beat`` and ``flower`` are thin wrappers over ``celery -A worker.app <cmd>``: they
build the app from ``REVERIE_*`` settings (``create_app``) and pass any further options through
to Celery, so ``reverie flower --persistent=True`` means what it means to Flower.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from worker.ops.cli.common import cli, console, err, fail, settings

if TYPE_CHECKING:
    from schemas.settings import Settings

PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


@cli.command()
def demo(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for reflections.")] = 60.0,
    model: Annotated[
        str | None, typer.Option(help="A litellm model to reflect with (default: the offline manager, not an LLM).")
    ] = None,
) -> None:
    """Run the whole pipeline on embedded defaults and show one reflection per burst."""
    from worker.observability.logs import configure
    from worker.ops.demo import run_demo

    # Own key prefix: the demo resets its keys, which must never be a deployment's.
    s = settings(after_seconds=1.0, max_wait_s=30.0, namespace="demo", key_prefix="reverie-demo")
    if model is not None:
        s = s.model_copy(update={"model": model})
    configure("WARNING")
    report = run_demo(s, console, timeout_s=timeout)
    ok = all(report.reflections[k] == report.bursts[k] for k in report.bursts)
    console.print(
        f"{sum(report.bursts.values())} bursts → {sum(report.reflections.values())} reflections "
        f"({'one per burst' if ok else 'MISMATCH'}); outcomes: {dict(report.outcomes)}"
    )
    if not ok:
        raise typer.Exit(1)


def _celery(argv: list[str], *, owns_store: bool = False) -> None:
    """Run a Celery command and exit with its status: a worker that could not start must not
    look like a clean exit to a supervisor (systemd, Kubernetes, compose ``restart: on-failure``)."""
    from worker.app import create_app
    from worker.observability.logs import configure

    s = settings()
    configure(s.log_level)
    if owns_store and s.qdrant_url is None:
        _claim_local_store(s)
    code = create_app(s).start(argv)
    raise typer.Exit(code or 0)


def _claim_local_store(s: Settings) -> None:
    """Local-mode Qdrant is one process's folder: say so now, in one line, rather than let the
    worker fail in its first bootstep with a traceback."""
    from producer.errors import StoreLocked
    from producer.memories import open_qdrant

    try:
        open_qdrant(s).close()
    except StoreLocked as e:
        fail(str(e), code=1)
    err.print(
        f"[dim]local-mode Qdrant at {s.qdrant_path}: this worker owns it alone; to read memories while it "
        "runs or to run more workers, use a Qdrant server (REVERIE_QDRANT_URL)[/]",
        highlight=False,
    )


@cli.command(context_settings=PASSTHROUGH)
def worker(
    ctx: typer.Context,
    concurrency: Annotated[int | None, typer.Option(help="Threads (default REVERIE_WORKER_CONCURRENCY).")] = None,
    loglevel: str = "INFO",
) -> None:
    """Start a Celery worker with a dispatcher thread (== celery -A worker.app worker -Q reverie)."""
    argv = ["worker", f"--loglevel={loglevel}", "-Q", "reverie", "-E"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    _celery(argv + ctx.args, owns_store=True)


@cli.command(context_settings=PASSTHROUGH)
def beat(ctx: typer.Context, loglevel: str = "INFO") -> None:
    """Start Celery beat on the RedBeat scheduler (== celery -A worker.app beat).

    The schedule and its lock live in Redis under REVERIE_KEY_PREFIX, so running two beats is
    safe: one holds the lock, the other waits to take over."""
    _celery(["beat", f"--loglevel={loglevel}", *ctx.args])


@cli.command(context_settings=PASSTHROUGH)
def flower(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="HTTP port.")] = 5555,
    address: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    basic_auth: Annotated[
        str | None, typer.Option(envvar="FLOWER_BASIC_AUTH", help="user:password[,user2:password2]; strongly advised.")
    ] = None,
) -> None:
    """Start the Flower dashboard on the project's broker (== celery -A worker.app flower).

    Flower's own metrics are at /metrics; Reverie's at a worker's REVERIE_METRICS_PORT or
    ``reverie metrics --serve``."""
    argv = ["flower", f"--port={port}", f"--address={address}"]
    if basic_auth:
        argv.append(f"--basic-auth={basic_auth}")
    _celery(argv + ctx.args)


@cli.command()
def dispatcher() -> None:
    """Run a standalone dispatcher (workers run one each by default)."""
    import threading

    from worker.app import create_app, make_dispatcher
    from worker.observability.logs import configure

    s = settings()
    configure(s.log_level)
    stop = threading.Event()
    try:
        make_dispatcher(create_app(s)).run(stop)
    except KeyboardInterrupt:
        stop.set()
