"""On-call commands: what is waiting, counters, dead letters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from producer.keys import split_member
from worker.ops.cli.common import JsonOpt, check_id, cli, console, coordinator, fail, print_json, short_time, table

dlq_cli = typer.Typer(
    no_args_is_help=True, help="Dead letters: threads whose reflection kept failing, webhook events never delivered."
)
cli.add_typer(dlq_cli, name="dlq")


def _s(value: bytes | str | None) -> str:
    return "" if value is None else value.decode() if isinstance(value, bytes) else value


def _now_ms(client: Any) -> int:
    t = client.time()
    return int(t[0]) * 1000 + int(t[1]) // 1000


@cli.command()
def pending(
    limit: Annotated[int, typer.Option(min=1, max=100000, help="Threads shown per state.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Threads waiting (due) or being reflected (running): due time, turns buffered, oldest wait."""
    coord = coordinator()
    r, keys = coord.r, coord.keys
    now_ms = _now_ms(r)
    pipe = r.pipeline(transaction=False)
    for shard in keys.all_shards():  # every shard's first `limit`, then the first `limit` of all
        pipe.zrange(shard.due_ss, 0, limit - 1, withscores=True)
        pipe.zrange(shard.inflight_ss, 0, limit - 1, withscores=True)
        pipe.zcard(shard.due_ss)
        pipe.zcard(shard.inflight_ss)
    per_shard = pipe.execute()
    due = sorted((x for n in range(0, len(per_shard), 4) for x in per_shard[n]), key=lambda x: x[1])
    running = sorted((x for n in range(1, len(per_shard), 4) for x in per_shard[n]), key=lambda x: x[1])
    listed = [("due", m, s) for m, s in due[:limit]] + [("running", m, s) for m, s in running[:limit]]
    totals = {"due": sum(per_shard[2::4]), "running": sum(per_shard[3::4])}
    pipe = r.pipeline(transaction=False)
    for _, raw, _ in listed:
        user, thread = split_member(raw)
        pipe.llen(keys.buffer(user, thread))
        pipe.hget(keys.thread(user, thread), "first_ms")
    replies = pipe.execute()
    rows = []
    for i, (state, raw, score) in enumerate(listed):
        user, thread = split_member(raw)
        turns, first_ms = replies[2 * i], replies[2 * i + 1]
        rows.append(
            {
                "user_id": user,
                "thread_id": thread,
                "state": state,
                # due: seconds until due (negative = overdue); running: seconds until its in-flight deadline
                "due_in_s": round((score - now_ms) / 1000, 2),
                "turns": int(turns),
                "oldest_wait_s": round((now_ms - int(first_ms)) / 1000, 2) if first_ms else None,
            }
        )
    if as_json:
        print_json({"threads": rows, "totals": totals})
        return
    table(
        f"pending: {totals['due']} due, {totals['running']} running",
        ["user_id", "thread_id", "state", "due_in_s", "turns", "oldest_wait_s"],
        [list(row.values()) for row in rows],
        right=("due_in_s", "turns", "oldest_wait_s"),
    )


def collect_stats(coord: Any) -> dict[str, Any]:
    """Counters from the shared stats hash plus live queue sizes, named for people."""
    from worker.pipeline.stats import RedisCollector

    s = RedisCollector(coord).snapshot()

    def n(key: str) -> int:
        return int(s.get(key, 0))

    dispatched = n("dispatched")
    return {
        "enqueued_turns": n("enqueued_turns"),
        "duplicate_turns": n("duplicate_turns"),
        "dispatched": dispatched,
        "superseded": n("superseded"),
        "reflections_ok": n("committed"),
        "rolled_back": n("rolled_back"),
        "deferred": n("deferred"),
        "noop": n("noop"),
        "reflections_failed": n("failed"),
        "dead_lettered_total": n("dead_lettered"),
        "reflected_turns": n("reflected_turns"),
        "requeued": n("requeued"),
        "llm_calls": n("llm_calls"),
        "llm_calls_failed": n("llm_calls_failed"),
        "llm_calls_in_failed_reflections": n("llm_calls_in_failures"),
        "llm_text_replies": n("llm_text_replies"),
        "prompt_tokens": n("prompt_tokens"),
        "completion_tokens": n("completion_tokens"),
        "cost_usd": round(s.get("cost_microusd", 0) / 1e6, 6),
        **_lag(s),
        "oldest_overdue_s": round(s["oldest_overdue_s"], 3),
        "due_threads": n("due_threads"),
        "inflight_threads": n("inflight_threads"),
        "buffered_turns": n("buffered_turns"),
        "dead_letters": n("dead_letters"),
    }


def _lag(s: dict[str, float]) -> dict[str, float | None]:
    """Dispatch lag from the fleet-wide histogram: mean, and p50/p99 as bucket upper bounds."""
    from worker.pipeline.histograms import DISPATCH_LAG, quantile, read

    buckets, total = read(s, DISPATCH_LAG)
    count = buckets[-1][1] if buckets else 0
    p50, p99 = quantile(buckets, 0.5), quantile(buckets, 0.99)
    return {
        "dispatch_lag_avg_ms": round(total * 1000 / count, 1) if count else 0.0,
        "dispatch_lag_p50_ms_le": None if p50 is None else p50 * 1000,
        "dispatch_lag_p99_ms_le": None if p99 is None else p99 * 1000,
    }


@cli.command()
def stats(as_json: JsonOpt = False) -> None:
    """Counters (fleet-wide, from Redis): turns, reflections by outcome, LLM calls, tokens, cost, lag."""
    data = collect_stats(coordinator())
    if as_json:
        print_json(data)
        return
    table("reverie stats", ["counter", "value"], [[k, v] for k, v in data.items()], right=("value",))


# -- dead letters ---------------------------------------------------------------------------


def _letter_row(letter: Any, turns: int) -> dict[str, Any]:
    return {
        "user_id": letter.user_id,
        "thread_id": letter.thread_id,
        "generation": letter.generation,
        "attempts": letter.attempts,
        "failed_at": datetime.fromtimestamp(letter.failed_ms / 1000, UTC).isoformat(timespec="seconds"),
        "failed": short_time(letter.failed_ms),
        "turns": turns,
        "reason": letter.reason,
    }


def _turn_counts(coord: Any, letters: list[Any]) -> list[int]:
    pipe = coord.r.pipeline(transaction=False)
    for letter in letters:
        pipe.llen(coord.keys.buffer(letter.user_id, letter.thread_id))
    return [int(n) for n in pipe.execute()] if letters else []


@dlq_cli.command("list")
def dlq_list(as_json: JsonOpt = False) -> None:
    """Dead-lettered threads, oldest failure first."""
    coord = coordinator()
    letters = sorted(coord.dead_letters(), key=lambda d: d.failed_ms)
    rows = [_letter_row(d, n) for d, n in zip(letters, _turn_counts(coord, letters), strict=True)]
    if as_json:
        print_json([{k: v for k, v in r.items() if k != "failed"} for r in rows])
        return
    cols = ["user_id", "thread_id", "generation", "attempts", "failed", "turns", "reason"]
    heads = ["user", "thread", "gen", "tries", "failed (UTC)", "turns", "reason"]
    cells = [[r[c] for c in cols] for r in rows]
    table(f"dead letters ({len(rows)})", heads, cells, right=("gen", "tries", "turns"))


def _letter(coord: Any, user: str, thread: str) -> Any:
    from schemas.reflection import DeadLetter

    check_id("user", user)
    check_id("thread", thread)
    raw = coord.dead_letter_raw(user, thread)
    if raw is None:
        fail(f"no dead letter for user {user} thread {thread}", code=1)
    return DeadLetter.model_validate_json(raw)


@dlq_cli.command("show")
def dlq_show(user: str, thread: str, as_json: JsonOpt = False) -> None:
    """One dead letter: why it failed and what is still buffered (turn ids and roles, no text)."""
    from worker.pipeline.coordinator import decode_turn

    coord = coordinator()
    letter = _letter(coord, user, thread)
    raw_turns = coord.r.lrange(coord.keys.buffer(user, thread), 0, 199)
    turns = [decode_turn(t) for t in raw_turns]
    data = _letter_row(letter, coord.r.llen(coord.keys.buffer(user, thread)))
    data["buffered"] = [{"id": t.id, "role": t.role, "chars": len(t.content)} for t in turns]
    data.pop("failed")
    if as_json:
        print_json(data)
        return
    for k, v in data.items():
        if k != "buffered":
            console.print(f"[bold]{k}[/]: {v}", highlight=False)
    table("buffered turns (first 200)", ["id", "role", "chars"], [list(t.values()) for t in data["buffered"]])


@dlq_cli.command("replay")
def dlq_replay(
    user: Annotated[str | None, typer.Argument()] = None,
    thread: Annotated[str | None, typer.Argument()] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Make dead-lettered threads due now (attempts reset, turns kept)."""
    coord = coordinator()
    if all_ == (user is not None):
        fail("give USER THREAD or --all")
    if all_:
        targets = [(d.user_id, d.thread_id) for d in coord.dead_letters()]
    else:
        if thread is None:
            fail("missing THREAD")
        _letter(coord, user, thread)  # type: ignore[arg-type]
        targets = [(user, thread)]  # type: ignore[list-item]
    replayed = [f"{u}:{t}" for u, t in targets if coord.replay_dead(u, t)]
    if as_json:
        print_json({"replayed": replayed})
    else:
        console.print(f"replayed {len(replayed)} thread(s)")


@dlq_cli.command("drop")
def dlq_drop(
    user: str,
    thread: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Discard a dead letter and the turns buffered for its thread (they will never be reflected)."""
    coord = coordinator()
    _letter(coord, user, thread)
    if not yes and not typer.confirm(f"Drop {user}:{thread} and its buffered turns?", default=False, err=True):
        fail("aborted", code=1)
    dropped = coord.drop_dead(user, thread)
    if dropped is None:
        fail(f"no dead letter for user {user} thread {thread}", code=1)
    if as_json:
        print_json({"dropped": f"{user}:{thread}", "turns": dropped})
    else:
        console.print(f"dropped {user}:{thread} ({dropped} buffered turn(s) discarded)")
