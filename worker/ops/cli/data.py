"""Per-user commands: submit a turn, read memories, forget a user."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from worker.ops.cli.common import (
    JsonOpt,
    check_id,
    cli,
    console,
    fail,
    print_json,
    reader,
    redis_unreachable,
    require_redis_url,
    runtime,
    settings,
    short_time,
)
from worker.ops.cli.common import table as print_table


@cli.command()
def submit(
    user: str,
    thread: str,
    text: str,
    role: Annotated[str, typer.Option(help="user|assistant|system|tool")] = "user",
    after: Annotated[float | None, typer.Option(help="Debounce seconds (default REVERIE_AFTER_SECONDS).")] = None,
    message_id: Annotated[str | None, typer.Option("--id", help="Message id (idempotent).")] = None,
    profile: Annotated[str, typer.Option(help="Memory profile of the thread (REVERIE_PROFILES).")] = "default",
    as_json: JsonOpt = False,
) -> None:
    """Submit one turn, as a chat server would."""
    from producer import InvalidSubmission, Producer, ProducerUnavailable

    check_id("user", user)
    check_id("thread", thread)
    if message_id is not None:
        check_id("--id", message_id)
    cfg = _producer_config()
    message: dict[str, Any] = {"role": role, "content": text}
    if message_id:
        message["id"] = message_id
    try:
        with Producer(cfg) as producer:
            receipt = producer.submit(user, thread, [message], after_seconds=after, profile=profile)
    except InvalidSubmission as e:
        fail(str(e))
    except (ProducerUnavailable, ConnectionError) as e:
        fail(redis_unreachable(e.__cause__ or e), code=1)
    if as_json:
        print_json(receipt.model_dump(mode="json"))
    else:
        console.print(f"{receipt.status}: {receipt.accepted} turn(s), generation {receipt.generation}, {_due(receipt)}")


def _producer_config() -> Any:
    """A producer as a chat server would build it, except that Redis down is an error."""
    from producer import ProducerConfig

    s = settings()
    return ProducerConfig(
        redis_url=require_redis_url(s),
        key_prefix=s.key_prefix,
        after_seconds=s.after_seconds,
        max_wait_s=s.max_wait_s,
        on_unavailable="raise",
        timeout_s=max(s.redis_timeout_s, 2.0),
        profiles=_known_profiles(s),
        cluster=s.redis_cluster,
        shards=s.shards,
    )


def _known_profiles(s: Any) -> frozenset[str]:
    """The names a worker would accept (built-ins plus REVERIE_PROFILES), so an unknown
    ``--profile`` is refused at submit rather than dead-lettered later."""
    from schemas.profiles import ProfileError, load_profiles, profile_names

    try:
        load_profiles(s.profiles)
    except ProfileError as e:  # a bad REVERIE_PROFILES is configuration, said in one line
        fail(f"configuration: {e}")
    return profile_names()


def _due(receipt: Any) -> str:
    """ "due in 30 s (at 12:01:05 UTC)", from the due time the server computed."""
    if receipt.due_at_ms is None:
        return "not scheduled (the thread is dead-lettered: see reverie dlq)"
    return due_text(receipt.due_at_ms)


def due_text(due_at_ms: int, *, compact: bool = False) -> str:
    """ "due in 30 s (at 12:01:05 UTC)", or "in 30 s (12:01:05)" for a table cell."""
    import time
    from datetime import UTC, datetime

    seconds = max(0.0, due_at_ms / 1000 - time.time())
    at = datetime.fromtimestamp(due_at_ms / 1000, UTC).strftime("%H:%M:%S")
    return f"in {seconds:.0f} s ({at})" if compact else f"due in {seconds:.0f} s (at {at} UTC)"


@cli.command()
def search(
    user: str,
    query: str,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 5,
    kind: str | None = None,
    pending: Annotated[bool, typer.Option("--pending", help="Also match turns not yet reflected.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Search one user's memories (the chat server's hot path)."""
    check_id("user", user)
    if kind is not None:
        check_id("--kind", kind)
    with reader() as r:
        try:
            hits = r.search(user, query, kind=kind, limit=limit, include_pending=pending)
        except ValueError as e:
            fail(str(e))
    _records(hits, as_json, title=f"search {user}", scored=True)


@cli.command()
def memories(
    user: str,
    kind: str | None = None,
    limit: Annotated[int, typer.Option(min=1, max=100000)] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """List one user's memories."""
    check_id("user", user)
    if kind is not None:
        check_id("--kind", kind)
    with reader() as r:
        found = r.list(user, kind=kind, limit=limit)
    _records(found, as_json, title=f"memories of {user}")


def _records(records: list[Any], as_json: bool, *, title: str, scored: bool = False) -> None:
    if as_json:
        print_json([r.model_dump(mode="json") for r in records])
        return
    columns = ["id", "kind", "content", "updated", *(["score"] if scored else [])]
    rows = [
        [
            r.id[:8],
            r.kind,
            r.content,
            short_time(int(r.updated_at.timestamp() * 1000)),
            *([_score(r.score)] if scored else []),
        ]
        for r in records
    ]
    print_table(f"{title} ({len(records)})", columns, rows, right=("score",))


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


@cli.command()
def forget(
    user: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    wait: Annotated[
        float, typer.Option(min=0, max=3600, help="Seconds to wait for a running reflection of the user.")
    ] = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Forget a user everywhere: memories, buffers, journals, queue entries, dead letters, results."""
    from worker.features.forget import UserBusy, forget_user

    check_id("user", user)
    if not yes and not typer.confirm(f"Forget everything about user {user}?", default=False, err=True):
        fail("aborted", code=1)
    try:
        counts = forget_user(runtime(), user, lease_wait_s=wait)
    except UserBusy as e:
        fail(str(e), code=1)
    if as_json:
        print_json({"user_id": user, "removed": counts})
        return
    print_table(f"forgot {user}", ["what", "removed"], [[k, v] for k, v in counts.items()], right=("removed",))


STATES = {"dead_lettered": "dead"}
"""Table cells: short names, so a user's threads fit 80 columns (``--json`` has the full ones)."""


@cli.command()
def status(
    user: str,
    thread: Annotated[str | None, typer.Argument(help="One thread; omit for all the user's threads.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="Threads shown for a user.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Where a user's submissions stand: turns buffered, due, running, dead-lettered, last reflection."""
    from producer import Producer, ProducerUnavailable

    check_id("user", user)
    if thread is not None:
        check_id("thread", thread)
    try:
        with Producer(_producer_config()) as producer:
            found = producer.status(user, thread, limit=limit)
    except (ProducerUnavailable, ConnectionError) as e:
        fail(redis_unreachable(e.__cause__ or e), code=1)
    if as_json:
        print_json(found.model_dump(mode="json"))
    elif thread is not None:
        _print_thread(found)
    else:
        _print_user(found)


def _print_thread(s: Any) -> None:
    if s.due_at_ms is not None:
        when = due_text(s.due_at_ms)
    else:
        when = {
            "dead_lettered": "not scheduled (dead-lettered: see reverie dlq)",
            "running": "being reflected now",
        }.get(s.state, "nothing scheduled")
    lines = [
        f"{s.user_id} {s.thread_id}: {s.state}, {s.buffered_turns} turn(s) buffered, generation {s.generation}",
        when + (", in flight" if s.in_flight and s.state != "running" else ""),
    ]
    last = s.last
    if last is None:
        lines.append("last reflection: none recorded")
    else:
        error = f" ({last.error})" if last.error else ""
        lines.append(
            f"last reflection: generation {last.generation} {last.outcome}{error} at {short_time(last.at_ms)} UTC"
        )
        by = f" by {last.extractor}" if last.extractor else ""
        lines.append(
            f"  {last.turns} turn(s): {last.inserted} inserted, {last.updated} updated, {last.deleted} deleted{by}"
        )
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)


def _print_user(u: Any) -> None:
    rows = []
    for s in u.threads:
        last = s.last
        rows.append(
            [
                s.thread_id,
                STATES.get(s.state, s.state),
                s.buffered_turns,
                due_text(s.due_at_ms, compact=True) if s.due_at_ms is not None else "-",
                "-" if last is None else f"{STATES.get(last.outcome, last.outcome)} g{last.generation}",
                "" if last is None else f"+{last.inserted} ~{last.updated} -{last.deleted}",
            ]
        )
    shown = f"{len(u.threads)} of {u.total_threads}" if u.total_threads > len(u.threads) else f"{u.total_threads}"
    print_table(
        f"status of {u.user_id}: {shown} thread(s)",
        ["thread_id", "state", "turns", "due", "last", "changes"],
        rows,
        right=("turns",),
    )
