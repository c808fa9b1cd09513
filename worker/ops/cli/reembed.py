"""``reverie reembed``: move every memory to another embedding model with no downtime
(``worker.features.reembed``), in this process or, while a worker owns a local-mode Qdrant
folder, as the ``reverie.reembed`` task inside that worker (``--in-worker``)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from producer.core import describe_errors
from worker.ops.cli.common import JsonOpt, cli, console, fail, print_json, require_redis_url, settings

if TYPE_CHECKING:
    from schemas.reembed import ReembedArgs
    from schemas.settings import Settings
    from worker.features.reembed import Context

POLL_S = 0.5
START_TIMEOUT_S = 60.0
"""How long ``--in-worker`` waits for a worker to take the task (it says "starting" at once)."""


def build_context(s: Settings) -> Context:
    """Redis + the worker's store, without the rest of a worker (no litellm warm-up).
    Module-level so tests can hand the command the running test's store."""
    import redis

    from worker.features.reembed import Context
    from worker.memory.store import open_store
    from worker.pipeline.keys import WorkerKeys

    client = redis.Redis.from_url(require_redis_url(s), socket_timeout=30, socket_connect_timeout=5)
    return Context(open_store(s), client, WorkerKeys(s.key_prefix), s)


@contextlib.contextmanager
def _context(s: Settings) -> Iterator[Context]:
    from producer.errors import StoreLocked
    from producer.memories.local_socket import SocketReader, socket_path

    try:
        ctx = build_context(s)
    except StoreLocked as e:
        path = socket_path(s.qdrant_path)
        if path is not None and SocketReader(path).alive():
            fail(
                f"a worker owns the local-mode Qdrant folder {s.qdrant_path}: run the re-embed inside it with "
                "`reverie reembed --in-worker …` (or stop the worker first)",
                code=1,
            )
        fail(str(e), code=1)
    try:
        yield ctx
    finally:
        ctx.store.close()
        ctx.redis.close()


@cli.command()
def reembed(
    to: Annotated[str | None, typer.Option("--to", help="use-m3, e5-small, hash-<dims> or a litellm model.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Memories per embedding call and upsert.")] = 64,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Counts and the embedding cost; writes nothing.")] = False,
    drop_old: Annotated[bool, typer.Option("--drop-old", help="Drop the collections finished re-embeds left.")] = False,
    abort: Annotated[bool, typer.Option("--abort", help="Discard an unfinished re-embed (before its switch).")] = False,
    in_worker: Annotated[
        bool, typer.Option("--in-worker", help="Run it as the reverie.reembed task in a running worker.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-embed every memory with another model; readers switch atomically, nothing is lost.
    Running it again continues an interrupted re-embed."""
    from schemas.reembed import ReembedArgs

    try:
        args = ReembedArgs(to=to, batch_size=batch_size, dry_run=dry_run, drop_old=drop_old, abort=abort)
    except ValidationError as e:
        fail("; ".join(_option(p) for p in describe_errors(e)))
    s = settings()
    require_redis_url(s)
    result = _in_worker(s, args, as_json) if in_worker else _here(s, args, as_json)
    _show(args, result, as_json)


def _option(problem: str) -> str:
    """``batch_size: …`` → ``--batch-size: …``; a whole-request problem without its prefix."""
    name, _, rest = problem.partition(": ")
    if name == "request":
        return rest
    return f"--{name.replace('_', '-')}: {rest}" if rest else problem


def _here(s: Settings, args: ReembedArgs, as_json: bool) -> dict[str, Any]:
    from worker.features.reembed import Reembed, ReembedBusy, ReembedRefused, abort, drop_old, kept_old
    from worker.features.reembed.task import progress_meta

    with _context(s) as ctx:
        try:
            if args.abort:
                return abort(ctx).model_dump()
            if args.drop_old:
                return {"phase": "done", "dropped": kept_old(ctx)} if args.dry_run else drop_old(ctx).model_dump()
            if args.dry_run:
                return Reembed(ctx).estimate(args).model_dump()
            with _bar(as_json) as update:
                return Reembed(ctx, progress=lambda st: update(progress_meta(st))).run(args).model_dump()
        except ReembedRefused as e:
            fail(str(e))
        except ReembedBusy as e:
            fail(str(e), code=1)


def _in_worker(s: Settings, args: ReembedArgs, as_json: bool) -> dict[str, Any]:
    """Send the task and follow it (and its continuations) to the end, with the same bar."""
    import uuid

    from worker.app import create_app
    from worker.tasks import REEMBED

    app = create_app(s)
    task_id = f"reembed:{s.namespace}:{uuid.uuid4().hex[:8]}"
    app.send_task(REEMBED, kwargs=args.model_dump(exclude_defaults=True), task_id=task_id)
    with _bar(as_json or args.dry_run or args.drop_old or args.abort) as update:
        while True:
            result = app.AsyncResult(task_id)
            waited = time.monotonic()
            while not result.ready():
                if result.state == "PROGRESS" and isinstance(result.info, dict):
                    waited = None
                    update(result.info)
                elif waited is not None and time.monotonic() - waited > START_TIMEOUT_S:
                    fail(
                        f"no worker took the re-embed task within {START_TIMEOUT_S:.0f} s: start `reverie worker` "
                        "(same REVERIE_REDIS_URL and REVERIE_KEY_PREFIX); the task stays queued for it",
                        code=1,
                    )
                time.sleep(POLL_S)
            if result.failed():
                fail(f"the worker's re-embed failed: {result.result}", code=2 if _refused(result.result) else 1)
            value: dict[str, Any] = result.get()
            if not value.get("next_task_id"):
                return value
            task_id = value["next_task_id"]


def _refused(error: Any) -> bool:
    return type(error).__name__ in ("ReembedRefused", "InvalidTaskArguments")


@contextlib.contextmanager
def _bar(hidden: bool) -> Iterator[Any]:
    """A progress bar shown from the first checkpoint on (a refused request prints no bar)."""
    columns = (TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    bar = Progress(*columns, console=console, disable=hidden)
    task: list[Any] = []

    def update(meta: dict[str, Any]) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task("", total=None))
        phase, total = str(meta.get("phase", "")), meta.get("total") or None
        bar.update(task[0], description=phase, completed=meta.get("copied", 0), total=total)

    try:
        yield update
    finally:
        bar.stop()


def _show(args: ReembedArgs, result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    if "memories" in result:  # a dry run's estimate
        cost = "unknown (not in litellm's cost map)" if result["cost_usd"] is None else f"${result['cost_usd']:.6f}"
        console.print(
            f"{result['source']} ({result['source_model']}) → {result['target']} ({result['target_model']})\n"
            f"memories {result['memories']}, users {result['users']}, batches {result['batches']} of "
            f"{result['batch_size']}\nembedding: {result['tokens']} tokens, cost {cost}\n(dry run: nothing written)",
            highlight=False,
        )
        return
    if args.drop_old or args.abort:
        verb = "would drop" if args.dry_run else "dropped"
        console.print(f"{verb}: {', '.join(result.get('dropped') or []) or 'nothing'}", highlight=False)
        return
    if result.get("continued"):
        console.print(f"paused in phase {result['phase']}: run the same command again to continue", highlight=False)
        return
    console.print(
        f"live: {result['target']} ({result['copied']} memories copied, {result['caught_up']} changed meanwhile, "
        f"{result['seconds']:.1f} s); {result['source']} is kept until `reverie reembed --drop-old`",
        highlight=False,
    )
