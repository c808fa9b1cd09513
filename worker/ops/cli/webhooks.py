"""Webhook commands: ``reverie webhooks`` (endpoints and their backlog) and the webhook dead
letters under ``reverie dlq`` (``webhooks``, ``replay-webhook``, ``drop-webhook``).

Endpoints are shown as ``scheme://host`` only: a URL's path or query may hold a token, and the
secret is never shown. Letters carry ids only.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from producer.text import as_text
from worker.ops.cli.common import (
    JsonOpt,
    cli,
    console,
    coordinator,
    err,
    fail,
    print_json,
    settings,
    short_time,
    table,
)
from worker.ops.cli.ops import dlq_cli

if TYPE_CHECKING:
    from schemas.settings import Settings
    from schemas.webhooks import DeliverArgs, WebhookDeadLetter

EVENT_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+=:{}-]{0,599}$")
"""An event id (``<user>:<source>:<ms>:<index>``) or, for an entry trimmed before it was read,
``<stream id>@<stream>``."""


def _endpoint_name(value: str, s: Settings, *, configured: bool) -> str:
    from schemas.webhooks import check_endpoint_name

    try:
        check_endpoint_name(value)
    except ValueError as e:
        fail(f"endpoint: {e}")
    if configured and value not in {w.name for w in s.webhooks}:
        fail(f"endpoint: {value!r} is not configured in REVERIE_WEBHOOKS")
    return value


def _event_ref(value: str) -> str:
    if not EVENT_REF.fullmatch(value):
        fail("event: not an event id (<user>:<source>:<ms>:<index>, as `reverie dlq webhooks` prints it)")
    return value


@cli.command()
def webhooks(as_json: JsonOpt = False) -> None:
    """Configured webhook endpoints: events sent, backlog (pending, not yet read) and dead letters."""
    from worker.features.webhooks.dlq import dead_letters
    from worker.features.webhooks.keys import group

    s = settings()
    coord = coordinator()
    r, keys = coord.r, coord.keys
    dead = dead_letters(r, keys)
    rows = []
    for endpoint in s.webhooks:
        pending, lag = 0, 0
        for stream in keys.event_streams():
            groups = {as_text(g["name"]): g for g in (r.xinfo_groups(stream) if r.exists(stream) else [])}
            info = groups.get(group(endpoint.name))
            if info is not None:
                pending += int(info["pending"])
                lag += int(info.get("lag") or 0)
        rows.append(
            {
                "endpoint": endpoint.name,
                "where": endpoint.where(),
                "events": list(endpoint.events),
                "content": endpoint.include_content,
                "pending": pending,
                "unread": lag,
                "dead_letters": sum(d.endpoint == endpoint.name for d in dead),
            }
        )
    if as_json:
        print_json(rows)
        return
    cells = [[*(r[k] for k in ("endpoint", "where")), _events(r["events"]), *_counts(r)] for r in rows]
    heads = ["endpoint", "where", "events", "pending", "unread", "dead"]
    table(f"webhooks ({len(rows)})", heads, cells, right=("pending", "unread", "dead"))
    if not rows:
        console.print("none configured: set REVERIE_WEBHOOKS (README, Webhooks)", style="dim", highlight=False)


def _events(types: list[str]) -> str:
    from schemas.webhooks import ALL_EVENT_TYPES

    return "all" if set(types) == set(ALL_EVENT_TYPES) else ",".join(t.split(".")[1] for t in types)


def _counts(row: dict[str, Any]) -> list[Any]:
    return [row["pending"], row["unread"], row["dead_letters"]]


# -- dead letters -----------------------------------------------------------------------------


def _letter_row(d: WebhookDeadLetter) -> dict[str, Any]:
    return {
        "endpoint": d.endpoint,
        "event": d.ref,
        "user_id": d.user_id,
        "attempts": d.attempts,
        "status": d.status,
        "error": d.error,
        "at_ms": d.at_ms,
        "replayed_ms": d.replayed_ms,
    }


@dlq_cli.command("webhooks")
def dlq_webhooks(
    endpoint: Annotated[str | None, typer.Option(help="Only this endpoint's letters.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Webhook dead letters: events an endpoint refused (4xx) or never took (attempts used up)."""
    from worker.features.webhooks.dlq import dead_letters

    if endpoint is not None:
        _endpoint_name(endpoint, settings(), configured=False)
    coord = coordinator()
    rows = [_letter_row(d) for d in dead_letters(coord.r, coord.keys, endpoint)]
    if as_json:
        print_json(rows)
        return
    cells = [
        [
            r["endpoint"],
            short_time(r["at_ms"]),
            r["attempts"],
            r["error"] + (" (replaying)" if r["replayed_ms"] else ""),
            r["event"],
        ]
        for r in rows
    ]
    table(f"webhook dead letters ({len(rows)})", ["endpoint", "at (UTC)", "tries", "reason", "event"], cells)


@contextlib.contextmanager
def delivery_sender(s: Settings) -> Iterator[Callable[[DeliverArgs], None]]:
    """Sends ``reverie.deliver_webhook`` tasks to the broker. Module-level so tests can hand the
    CLI the test worker's app."""
    from worker.app import create_app, webhook_sender

    app = create_app(s)
    try:
        yield webhook_sender(app)
    finally:
        app.close()


@dlq_cli.command("replay-webhook")
def dlq_replay_webhook(
    endpoint: Annotated[str | None, typer.Argument(help="The endpoint's name.")] = None,
    event: Annotated[str | None, typer.Argument(help="The event id, as `reverie dlq webhooks` prints it.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every webhook dead letter (of ENDPOINT if given).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Send dead-lettered events again (attempts start over); a letter goes once its event is delivered."""
    from worker.features.webhooks.dlq import NotReplayable, UnknownDeadLetter, dead_letters, get_letter, replay

    s = settings()
    if endpoint is not None:
        _endpoint_name(endpoint, s, configured=True)
    if all_ == (event is not None) or (endpoint is None and not all_):
        fail("give ENDPOINT EVENT, or --all [ENDPOINT]")
    coord = coordinator()
    r, keys = coord.r, coord.keys
    if all_:
        letters = dead_letters(r, keys, endpoint)
        unknown = sorted({d.endpoint for d in letters} - {w.name for w in s.webhooks})
        letters = [d for d in letters if d.endpoint not in unknown]
    else:
        try:
            letters = [get_letter(r, keys, endpoint, _event_ref(event))]  # type: ignore[arg-type]
        except UnknownDeadLetter as e:
            fail(str(e), code=1)
        unknown = []
    replayed, gone = [], []
    columns = (TextColumn("replaying"), BarColumn(), MofNCompleteColumn())
    with delivery_sender(s) as send, Progress(*columns, console=err, disable=as_json or not all_) as bar:
        task = bar.add_task("letters", total=len(letters))
        for letter in letters:
            try:
                replay(r, keys, letter, send)
                replayed.append(letter.ref)
            except NotReplayable as e:
                if not all_:
                    fail(str(e), code=1)
                gone.append(letter.ref)
            bar.advance(task)
    if as_json:
        print_json({"replayed": replayed, "trimmed": gone, "unconfigured_endpoints": unknown})
        return
    console.print(f"replayed {len(replayed)} event(s)", highlight=False)
    if gone:
        console.print(f"{len(gone)} no longer in the stream (trimmed): drop them", highlight=False)
    if unknown:
        console.print(f"skipped letters of unconfigured endpoints: {', '.join(unknown)}", highlight=False)


@dlq_cli.command("drop-webhook")
def dlq_drop_webhook(
    endpoint: str,
    event: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Discard a webhook dead letter (the event will not be sent to that endpoint)."""
    from worker.features.webhooks.dlq import drop

    _endpoint_name(endpoint, settings(), configured=False)
    _event_ref(event)
    coord = coordinator()
    if not yes and not typer.confirm(f"Drop the letter of {event} for {endpoint}?", default=False, err=True):
        fail("aborted", code=1)
    if not drop(coord.r, coord.keys, endpoint, event):
        fail(f"no webhook dead letter for endpoint {endpoint} event {event}", code=1)
    if as_json:
        print_json({"dropped": event, "endpoint": endpoint})
    else:
        console.print(f"dropped the letter of {event} for {endpoint}", highlight=False)
