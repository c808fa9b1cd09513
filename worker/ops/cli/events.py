"""``reverie events``: the change events stream (ids only), listed or followed.

With shards there is one stream per shard; they are read and merged by time (stream ids are
``<ms>-<seq>``; ``--since`` applies to each). Streams are not indexed by user, so ``--user``
filters what is read, batch by batch. Services
should read with a consumer group instead (README, "Change events"); this command is for
operators and debugging, and never acknowledges anything.
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Annotated

import typer

from worker.ops.cli.common import JsonOpt, check_id, cli, console, coordinator, fail, print_json, short_time
from worker.ops.cli.common import table as print_table

if TYPE_CHECKING:
    import redis

    from schemas.events import ChangeEvent

STREAM_ID = re.compile(r"^\d{1,20}(-\d{1,20})?$")
BATCH = 500
BLOCK_MS = 1000
"""One XREAD BLOCK wait: below the CLI's 5 s socket timeout, so Ctrl-C is prompt too."""
POLL_S = 0.25
"""With several shards' streams, the pause between polls that found nothing."""


def _check_since(since: str | None) -> str | None:
    if since is not None and not STREAM_ID.fullmatch(since):
        fail(f"--since: {since!r} is not a stream id (<ms> or <ms>-<seq>, as printed by --json or 'next:')")
    return since


def _matching(events: list[ChangeEvent], user: str | None) -> list[ChangeEvent]:
    return [e for e in events if user is None or e.user_id == user]


def order(stream_id: str) -> tuple[int, int]:
    """A stream id as a sortable pair (ms, seq): how the shards' streams are merged by time."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def _merged(per_stream: list[list[ChangeEvent]]) -> list[ChangeEvent]:
    return sorted((e for events in per_stream for e in events), key=lambda e: order(e.stream_id))


def _after(r: redis.Redis, keys: list[str], since: str, count: int, user: str | None) -> list[ChangeEvent]:
    """Up to ``count`` events (of ``user``) after ``since``, oldest first, over every shard's
    stream (merged by time: stream ids are ``<ms>-<seq>``)."""
    return _merged([_after_one(r, key, since, count, user) for key in keys])[:count]


def _after_one(r: redis.Redis, key: str, since: str, count: int, user: str | None) -> list[ChangeEvent]:
    from worker.memory.events import read_events

    out: list[ChangeEvent] = []
    while len(out) < count:
        batch = read_events(r, key, since=since, count=BATCH)
        if not batch:
            break
        out += _matching(batch, user)
        since = batch[-1].stream_id
    return out[:count]


def _newest(r: redis.Redis, keys: list[str], count: int, user: str | None) -> list[ChangeEvent]:
    """The newest ``count`` events (of ``user``) over every shard's stream, oldest first."""
    return _merged([_newest_one(r, key, count, user) for key in keys])[-count:]


def _newest_one(r: redis.Redis, key: str, count: int, user: str | None) -> list[ChangeEvent]:
    from worker.memory.events import decode_entries

    out: list[ChangeEvent] = []
    top = "+"
    while len(out) < count:
        raw = r.xrevrange(key, max=top, min="-", count=BATCH)
        if not raw:
            break
        batch = decode_entries(raw)
        out += _matching(batch, user)
        top = f"({batch[-1].stream_id}"
    return list(reversed(out[:count]))


def _row(e: ChangeEvent) -> list[object]:
    return [short_time(e.ts_ms), e.op, e.user_id, e.thread_id, e.generation or "", e.memory_id[:8], e.kind]


def _show(events: list[ChangeEvent], as_json: bool, title: str) -> None:
    if as_json:
        print_json([e.model_dump(mode="json") for e in events])
        return
    columns = ["at", "op", "user", "thread", "gen", "memory", "kind"]
    print_table(title, columns, [_row(e) for e in events], right=("gen",))
    if events:
        console.print(f"next: --since {events[-1].stream_id}", style="dim", highlight=False)


@cli.command()
def events(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events (XREAD BLOCK).")] = False,
    user: Annotated[str | None, typer.Option(help="Only this user's events.")] = None,
    since: Annotated[str | None, typer.Option(help="Events after this stream id (default: the newest).")] = None,
    count: Annotated[int, typer.Option(min=1, max=100_000, help="Events to list.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Committed memory changes (ids only): insert, update, delete, merge, forget."""
    if user is not None:
        check_id("user", user)
    _check_since(since)
    coord = coordinator()
    r, keys = coord.r, coord.keys.event_streams()
    shown = _after(r, keys, since, count, user) if since is not None else _newest(r, keys, count, user)
    if not follow:
        title = keys[0] if len(keys) == 1 else f"{len(keys)} shards"
        _show(shown, as_json, f"events ({title})")
        return
    _follow(r, keys, shown, user, as_json)


def _follow(r: redis.Redis, keys: list[str], shown: list[ChangeEvent], user: str | None, as_json: bool) -> None:
    """Print what was listed, then every new event as it arrives: one JSON object a line with
    ``--json`` (for ``jq``), one short line otherwise. Ends with Ctrl-C. One stream is read
    with ``XREAD BLOCK``; several (shards) are polled in turn (a cluster refuses a multi-stream
    XREAD across slots), and what each poll finds is printed in time order."""
    from worker.memory.events import last_id, read_events

    # What was listed ends at one time for every stream (they were merged by time).
    cursors = {key: shown[-1].stream_id if shown else last_id(r, key) for key in keys}
    while True:
        for e in shown:
            if as_json:
                typer.echo(json.dumps(e.model_dump(mode="json"), sort_keys=True))
            else:
                cells = "  ".join(str(c) for c in _row(e) if c != "")
                console.print(f"{e.stream_id}  {cells}", highlight=False, soft_wrap=True)
        batches = []
        for key in keys:
            block = BLOCK_MS if len(keys) == 1 else None
            batch = read_events(r, key, since=cursors[key], count=BATCH, block_ms=block)
            if batch:
                cursors[key] = batch[-1].stream_id
            batches.append(batch)
        shown = _matching(_merged(batches), user)
        if len(keys) > 1 and not shown:
            time.sleep(POLL_S)
