"""``reverie reshard``: change the shard count of a live deployment (README "Redis Cluster")."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import Progress

from worker.ops.cli.common import JsonOpt, cli, console, fail, print_json, require_redis_url, settings


@cli.command()
def reshard(
    shards: Annotated[int, typer.Argument(min=1, max=1024, help="The new shard count (REVERIE_SHARDS).")],
    wait_s: Annotated[
        float, typer.Option("--wait-s", min=0, max=3600, help="How long to wait for reflections in flight.")
    ] = 60.0,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Move buffered turns, due times, dead letters and history to SHARDS shards, then record it.
    Submits to the old shards are refused meanwhile (producers follow the new layout on their own);
    restart workers and dispatchers with REVERIE_SHARDS=SHARDS afterwards."""
    from producer.connect import where
    from worker.ops.reshard import ReshardBlocked
    from worker.ops.reshard import reshard as run_reshard
    from worker.pipeline.keys import WorkerKeys
    from worker.runtime import open_redis, worker_keys

    s = settings()
    require_redis_url(s)
    client = open_redis(s, socket_timeout=30, socket_connect_timeout=5)
    ours = worker_keys(s)
    new = WorkerKeys(ours.prefix, shards, tagged=s.redis_cluster or None)
    recorded = client.get(ours.layout_key)
    # before sharding there was no record: then the unsharded names, if anything is there
    old = ours.like(recorded.decode()) if recorded is not None else WorkerKeys(ours.prefix)
    if old.layout == new.layout:
        console.print(f"already {shards} shard(s) ({new.layout}); nothing to do")
        return
    if not yes and not typer.confirm(
        f"Move Reverie's state at {where(client)} from {old.layout} to {new.layout}? Submits pause meanwhile.",
        default=False,
        err=True,
    ):
        fail("aborted", code=1)
    with Progress(console=console, transient=True, disable=as_json) as bar:
        task = bar.add_task("moving keys", total=None)
        try:
            report = run_reshard(client, old, new, wait_s=wait_s, progress=lambda _what, n: bar.advance(task, n))
        except ReshardBlocked as e:
            fail(str(e), code=1)
    if as_json:
        print_json(report.counts())
    else:
        console.print(
            f"resharded {old.layout} → {new.layout}: {report.keys} keys, {report.due} due, "
            f"{report.dead_letters} dead letters moved; restart workers with REVERIE_SHARDS={shards}"
        )
