"""Long-running processes: the demo, a Celery worker, beat, Flower and a standalone dispatcher.

``worker``, ``beat`` and ``flower`` are thin wrappers over ``celery -A worker.app <cmd>``: they
build the app from ``REVERIE_*`` settings (``create_app``) and pass any further options through
to Celery, so ``reverie flower --persistent=True`` means what it means to Flower.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
    keep: Annotated[bool, typer.Option(help="Keep the demo's keys and memories afterwards, to inspect them.")] = False,
) -> None:
    """Run the whole pipeline on embedded defaults and show one reflection per burst."""
    from worker.observability.logs import configure
    from worker.ops.demo import NEXT_STEPS, run_demo

    # Own key prefix: the demo resets its keys, which must never be a deployment's.
    s = settings(after_seconds=1.0, max_wait_s=30.0, namespace="demo", key_prefix="reverie-demo")
    if model is not None:
        s = s.model_copy(update={"model": model})
    configure("WARNING")
    report = run_demo(s, console, timeout_s=timeout, keep=keep)
    ok = all(report.reflections[k] == report.bursts[k] for k in report.bursts)
    console.print(
        f"{sum(report.bursts.values())} bursts → {sum(report.reflections.values())} reflections "
        f"({'one per burst' if ok else 'MISMATCH'}); outcomes: {dict(report.outcomes)}"
    )
    if keep:
        console.print(
            f"[dim]kept: inspect with REVERIE_KEY_PREFIX={s.key_prefix} REVERIE_NAMESPACE={s.namespace} "
            "uv run reverie memories alice (the embedded Valkey's keys went with it; "
            "set REVERIE_REDIS_URL to keep those too)[/]",
            highlight=False,
        )
    console.print(NEXT_STEPS, highlight=False)
    if not ok:
        raise typer.Exit(1)


def _celery(argv: list[str], *, owns_store: bool = False) -> None:
    """Run a Celery command and exit with its status: a worker that could not start must not
    look like a clean exit to a supervisor (systemd, Kubernetes, compose ``restart: on-failure``).
    A worker first checks the shard layout recorded in Redis (one line and exit 2 if it differs)."""
    from worker.observability.logs import configure

    s = settings()
    configure(s.log_level)
    app = _app(s)
    if owns_store:
        _coordinator(s).r.close()
        if s.qdrant_url is None:
            _claim_local_store(s)
    code = app.start(argv)
    raise typer.Exit(code or 0)


def _app(s: Settings) -> Any:
    """The Celery app, or one line naming the settings that cannot run together (exit 2)."""
    from worker.app import create_app
    from worker.errors import ConfigError

    try:
        return create_app(s)
    except ConfigError as e:
        fail(str(e))


def _coordinator(s: Settings) -> Any:
    """Redis, with the shard layout checked (recorded on a fresh deployment)."""
    from producer.errors import LayoutMismatch
    from worker.runtime import build_coordinator

    try:
        return build_coordinator(s)
    except LayoutMismatch as e:
        fail(str(e))


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
    """Start a Celery worker with a dispatcher thread (== celery -A worker.app worker -Q reverie;
    on RabbitMQ the queue is REVERIE_KEY_PREFIX.tasks)."""
    from worker.broker import broker_for
    from worker.runtime import redis_url

    s = settings()
    argv = ["worker", f"--loglevel={loglevel}", "-Q", broker_for(s, redis_url(s)).queue, "-E"]
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
    basic_auth_file: Annotated[
        Path | None,
        typer.Option(help="File of user:password lines (chmod 600); or set FLOWER_BASIC_AUTH. Strongly advised."),
    ] = None,
) -> None:
    """Start the Flower dashboard on the project's broker (== celery -A worker.app flower).

    Credentials never go on the command line, where ``ps`` shows them to every user of the
    machine: they come from ``FLOWER_BASIC_AUTH`` (which Flower reads itself) or from a file,
    and reach Flower through this process's environment. Flower's own metrics are at /metrics;
    Reverie's at a worker's REVERIE_METRICS_PORT or ``reverie metrics --serve``."""
    if any(a == "--basic_auth" or a.startswith(("--basic-auth", "--basic_auth")) for a in ctx.args):
        fail(
            "--basic-auth on the command line shows the password in `ps`; set FLOWER_BASIC_AUTH=user:password "
            "in the environment or pass --basic-auth-file FILE"
        )
    if basic_auth_file is not None:
        os.environ["FLOWER_BASIC_AUTH"] = read_basic_auth(basic_auth_file)
    elif os.environ.get("FLOWER_BASIC_AUTH") is not None:
        os.environ["FLOWER_BASIC_AUTH"] = parse_basic_auth(os.environ["FLOWER_BASIC_AUTH"], "FLOWER_BASIC_AUTH")
    elif address not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning:[/] Flower on {address} without basic auth: anyone who reaches it can revoke tasks")
    _celery(["flower", f"--port={port}", f"--address={address}", *ctx.args])


def read_basic_auth(path: Path) -> str:
    """``user:password`` per line (blank lines and ``#`` comments skipped), as Flower's
    comma-separated list."""
    try:
        text = path.read_text()
    except OSError as e:
        fail(f"--basic-auth-file {path}: cannot read it ({e.strerror or type(e).__name__})")
    lines = [x.strip() for x in text.splitlines() if x.strip() and not x.lstrip().startswith("#")]
    return parse_basic_auth(",".join(lines), f"--basic-auth-file {path}")


def parse_basic_auth(value: str, source: str) -> str:
    """Refuse what Flower would take silently or choke on later: no pair, an empty user or password."""
    pairs = [p.strip() for p in value.split(",") if p.strip()]
    if not pairs:
        fail(f"{source}: no user:password pair")
    for i, pair in enumerate(pairs, 1):
        user, sep, password = pair.partition(":")
        if not sep or not user or not password:
            fail(f"{source}: entry {i} is not user:password (both non-empty)")
    return ",".join(pairs)


@cli.command()
def dispatcher() -> None:
    """Run a standalone dispatcher (workers run one each by default), and the webhook relay when
    REVERIE_WEBHOOKS is set. It talks to Redis and the broker only, so it runs beside a
    local-mode worker, which owns the Qdrant folder."""
    import threading

    from worker.app import make_dispatcher, make_relay
    from worker.features.webhooks.relay import RelayThread
    from worker.observability.logs import configure

    s = settings()
    configure(s.log_level)
    stop = threading.Event()
    app, coord = _app(s), _coordinator(s)
    relay = RelayThread(make_relay(app, coordinator=coord)).start() if s.webhooks else None
    try:
        make_dispatcher(app, coordinator=coord).run(stop)
    except KeyboardInterrupt:
        stop.set()
    finally:
        if relay is not None:
            relay.stop()
