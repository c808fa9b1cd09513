"""Memory-manager commands: ``history`` (audit trail) and ``consolidate`` (batch pass)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from worker.ops.cli.common import (
    JsonOpt,
    check_id,
    cli,
    console,
    fail,
    history_log,
    print_json,
    runtime,
    short_time,
)
from worker.ops.cli.common import table as print_table


@cli.command()
def history(
    user: str,
    memory_id: Annotated[str | None, typer.Argument(help="One memory's trail; all of the user's when omitted.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The audit trail of a user's memories: every insert, update and delete, oldest first."""
    check_id("user", user)
    log = history_log()
    if memory_id is not None:
        memory_id = _resolve_prefix(user, check_id("memory_id", memory_id), log.history(user))
    entries = log.history(user, memory_id)
    if as_json:
        print_json([e.model_dump(mode="json") for e in entries])
        return
    rows = [
        [short_time(e.at_ms), e.op, e.memory_id[:8], e.reflection_id or "", e.old_content or "", e.new_content or ""]
        for e in entries
    ]
    print_table(f"history of {user}", ["at", "op", "memory", "reflection", "old", "new"], rows)


def _resolve_prefix(user: str, prefix: str, entries: list[Any]) -> str:
    """A memory id, or a unique prefix of one (as git takes commits): the tables show 8 characters."""
    ids = sorted({e.memory_id for e in entries if e.memory_id.startswith(prefix)})
    if len(ids) == 1:
        return ids[0]
    if not ids:
        fail(f"no memory of user {user} has an id starting with {prefix!r}", code=1)
    shown = ", ".join(ids[:10]) + (" …" if len(ids) > 10 else "")
    fail(f"memory id prefix {prefix!r} is ambiguous for user {user}: {shown}")


@cli.command()
def consolidate(
    user: Annotated[str | None, typer.Argument(help="One user; omit with --all for every changed user.")] = None,
    all_users: Annotated[bool, typer.Option("--all", help="Every user changed since the last run.")] = False,
    flush: Annotated[bool, typer.Option(help="First reflect every pending buffer now, ignoring debounce.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Merge near-duplicate memories and apply retention, now (beat runs it on a schedule)."""
    from worker.features.consolidation import consolidate_all, consolidate_user

    if (user is None) == (not all_users):
        fail("give a USER or --all (not both)")
    rt = runtime()
    if user is not None:
        check_id("user", user)
        report = consolidate_user(rt, user)
        counts = report.counts()
    else:
        with Progress(
            TextColumn("consolidating"), BarColumn(), MofNCompleteColumn(), console=console, disable=as_json
        ) as bar:
            task = bar.add_task("users", total=None)

            def progress(c: dict[str, int]) -> None:
                bar.update(task, total=c["users"], completed=c["done"])

            counts = consolidate_all(rt, flush=flush, progress=progress).counts()
    if as_json:
        print_json(counts)
        return
    print_table("consolidation", ["counter", "value"], [[k, v] for k, v in counts.items()], right=("value",))
