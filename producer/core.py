"""The pure part of ``submit``, shared by the sync and asyncio producers: validate, encode the
script arguments, decode the reply. No I/O here, so the two producers cannot drift apart."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from producer.errors import InvalidRequest, InvalidSubmission
from producer.keys import Keys, member
from schemas.messages import Message, SubmitReceipt, SubmitRequest

MSGID_TTL_S = 7 * 24 * 3600
"""How long a message id is remembered for idempotent re-submission."""
THREAD_INDEX_TTL_S = 8 * 24 * 3600
"""How long a user's thread-id index (``status(user)``) lives after the user's last submit: past
the longest ``max_wait`` (7 days) plus the day a reflected thread's state is kept."""


def describe_errors(err: ValidationError) -> list[str]:
    """Field paths and reasons from a pydantic error, without the offending input values."""
    problems = []
    for e in err.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in e["loc"]) or "request"
        msg = str(e["msg"]).removeprefix("Value error, ")
        problems.append(f"{loc}: {msg}")
    return problems


def build_request(
    user_id: object,
    thread_id: object,
    messages: object,
    *,
    after_seconds: object = None,
    max_wait: object = None,
    profile: object = "default",
    profiles: frozenset[str] | None = None,
) -> SubmitRequest:
    """Validate a submission; raise ``InvalidSubmission`` naming every bad field."""
    if isinstance(messages, Message | Mapping):
        messages = [messages]
    try:
        request = SubmitRequest.model_validate(
            {
                "user_id": user_id,
                "thread_id": thread_id,
                "messages": messages,
                "after_seconds": after_seconds,
                "max_wait": max_wait,
                "profile": profile,
            }
        )
    except ValidationError as e:
        raise InvalidSubmission(describe_errors(e)) from None
    if profiles is not None and request.profile not in profiles:
        raise InvalidSubmission([f"profile: unknown profile {request.profile!r}"])
    return request


WARM_MAX = 1000


def check_warm(connections: object) -> int:
    """The connection count ``warm`` takes: an int from 1 to ``WARM_MAX``."""
    if isinstance(connections, bool) or not isinstance(connections, int) or not 1 <= connections <= WARM_MAX:
        raise InvalidRequest([f"connections: expected an integer from 1 to {WARM_MAX}, got {connections!r}"])
    return connections


def check_debounce(request: SubmitRequest, after_s: float, max_wait_s: float) -> None:
    """``after_seconds`` must not exceed ``max_wait`` (as ``Settings`` requires): the cap would
    silently win and the caller's quiet period would never be honoured. Checked on the values in
    effect, so one given per call is compared with the producer's default for the other."""
    if after_s <= max_wait_s:
        return
    after = "after_seconds" if request.after_seconds is not None else "after_seconds (producer default)"
    cap = "max_wait" if request.max_wait is not None else "max_wait (producer default max_wait_s)"
    raise InvalidSubmission([f"after_seconds: {after} = {after_s:g} s exceeds {cap} = {max_wait_s:g} s"])


def encode_turns(messages: Iterable[Message], now_ms: int) -> list[str]:
    """Script ARGV pairs: (message id or '', turn JSON)."""
    argv: list[str] = []
    for m in messages:
        turn: dict[str, Any] = {"v": 1, "role": m.role, "content": m.content, "ts_ms": now_ms}
        if m.id is not None:
            turn["id"] = m.id
        if m.name is not None:
            turn["name"] = m.name
        argv.append(m.id or "")
        argv.append(json.dumps(turn, ensure_ascii=False, separators=(",", ":")))
    return argv


def submit_keys(keys: Keys, user_id: str, thread_id: str) -> list[str]:
    """KEYS of the SUBMIT script: all in the user's shard (one cluster slot)."""
    shard = keys.shard_for(user_id)
    return [
        keys.thread(user_id, thread_id),
        keys.buffer(user_id, thread_id),
        keys.msgids(user_id, thread_id),
        shard.due_ss,
        shard.dlq,
        shard.stats,
        keys.user_threads(user_id),
    ]


def submit_args(request: SubmitRequest, *, default_after_s: float, default_max_wait_s: float) -> list[str | int]:
    """ARGV of the SUBMIT script (independent of the key layout, so a spooled submit can be sent
    after a reshard). Raises ``InvalidSubmission`` when the effective ``after_seconds`` (given,
    or the producer's default) exceeds the effective ``max_wait``."""
    after_s = default_after_s if request.after_seconds is None else request.after_seconds
    max_wait_s = default_max_wait_s if request.max_wait is None else request.max_wait
    check_debounce(request, after_s, max_wait_s)
    u, t = request.user_id, request.thread_id
    argv: list[str | int] = [
        round(after_s * 1000),
        round(max_wait_s * 1000),
        member(u, t),
        request.profile,
        MSGID_TTL_S,
        t,
        THREAD_INDEX_TTL_S,
    ]
    argv.extend(encode_turns(request.messages, int(time.time() * 1000)))
    return argv


def submit_call(
    keys: Keys, request: SubmitRequest, *, default_after_s: float, default_max_wait_s: float
) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV for the SUBMIT script."""
    argv = submit_args(request, default_after_s=default_after_s, default_max_wait_s=default_max_wait_s)
    return submit_keys(keys, request.user_id, request.thread_id), argv


CLOSED = -1
"""First element of the SUBMIT reply when ``reverie reshard`` has closed the shard."""


def is_closed(reply: list[Any]) -> bool:
    return int(reply[0]) == CLOSED


def decode_reply(reply: list[Any], replicas: int | None = None) -> SubmitReceipt:
    accepted, dups, gen, due = (int(x) for x in reply)
    # Four ints from our own script: construct without re-validating (on the hot path).
    return SubmitReceipt.model_construct(
        status="accepted" if accepted else "duplicate",
        accepted=accepted,
        duplicates=dups,
        generation=gen,
        due_at_ms=None if due < 0 else due,
        replicas=replicas,
    )


def dropped_receipt() -> SubmitReceipt:
    """What ``submit`` returns under the ``drop`` policy when Redis is unreachable."""
    return SubmitReceipt(status="dropped", accepted=0, duplicates=0, generation=0, due_at_ms=None)


def spooled_receipt() -> SubmitReceipt:
    """What ``submit`` returns under the ``spool`` policy when Redis is unreachable."""
    return SubmitReceipt(status="spooled", accepted=0, duplicates=0, generation=0, due_at_ms=None)
