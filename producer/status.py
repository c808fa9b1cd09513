"""The shared part of ``status`` for the sync and asyncio producers: validate ids, build the
STATUS script's call, decode its reply. No I/O here (the caller runs the script).

One thread is one round trip: the read-only STATUS script (``producer/lua/status.lua``) reads
``TIME``, ``LLEN`` of the buffer, ``ZSCORE`` in the due and in-flight sets, ``HEXISTS`` in the dead
letters and ``HMGET`` of the thread hash, atomically, so the view is consistent. A whole user is
two: ``SMEMBERS`` of the user's thread index, then one script call for every thread. Every key is
in the user's shard (one slot on Redis Cluster).
"""

from __future__ import annotations

from typing import Any

from producer.errors import InvalidRequest
from producer.keys import Keys, member
from schemas.ids import check_id
from schemas.status import LastReflection, ThreadStatus

FIELDS = (
    "gen",
    "first_ms",
    "last_ms",
    "committed_gen",
    "attempts",
    "last_gen",
    "last_outcome",
    "last_end_ms",
    "last_turns",
    "last_ins",
    "last_upd",
    "last_del",
    "last_extractor",
    "last_error",
)
"""Thread-hash fields read (``last_*``: written by the worker when a reflection ends)."""
MAX_THREADS = 10_000


def check_ids(user_id: object, thread_id: object | None = None) -> tuple[str, str | None]:
    """Ids as ``submit`` accepts them; ``InvalidRequest`` naming the bad one otherwise."""
    problems = []
    for name, value in (("user_id", user_id), ("thread_id", thread_id)):
        if name == "thread_id" and value is None:
            continue
        try:
            check_id(value)  # type: ignore[arg-type]
        except (ValueError, TypeError) as e:
            problems.append(f"{name}: {e}")
    if problems:
        raise InvalidRequest(problems)
    return user_id, thread_id  # type: ignore[return-value]


def check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_THREADS:
        raise InvalidRequest([f"limit: must be an integer from 1 to {MAX_THREADS}"])
    return limit


def status_call(keys: Keys, user_id: str, thread_ids: list[str]) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of the STATUS script for these threads of one user."""
    shard = keys.shard_for(user_id)
    script_keys = [shard.due_ss, shard.inflight_ss, shard.dlq]
    for thread_id in thread_ids:
        script_keys += [keys.buffer(user_id, thread_id), keys.thread(user_id, thread_id)]
    argv: list[str | int] = [len(thread_ids), *(member(user_id, t) for t in thread_ids), *FIELDS]
    return script_keys, argv


def decode_replies(user_id: str, thread_ids: list[str], reply: list[Any]) -> tuple[list[ThreadStatus], int]:
    """The script's reply as one ``ThreadStatus`` per thread, and the server time (ms)."""
    seconds, micros = reply[0], reply[1]
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    out = []
    width = 4 + len(FIELDS)
    for n, thread_id in enumerate(thread_ids):
        row = reply[2 + width * n : 2 + width * (n + 1)]
        out.append(decode_status(user_id, thread_id, now_ms, row))
    return out, now_ms


def thread_ids(members: Any, limit: int) -> tuple[list[str], int]:
    """The first ``limit`` thread ids of the index (sorted), and how many it holds."""
    ids = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
    return ids[:limit], len(ids)


def _int(value: Any) -> int:
    return 0 if value is None else int(float(value))


def _opt(value: Any) -> int | None:
    return None if value is None else int(float(value))


def _str(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_status(user_id: str, thread_id: str, now_ms: int, reply: list[Any]) -> ThreadStatus:
    buffered, due, inflight, dead = _int(reply[0]), _opt(reply[1]), reply[2], _int(reply[3])
    f = dict(zip(FIELDS, reply[4:], strict=True))
    in_flight, dead_lettered = inflight is not None, bool(dead)
    last = None
    if _str(f["last_outcome"]):
        last = LastReflection(
            generation=_int(f["last_gen"]),
            outcome=_str(f["last_outcome"]),  # type: ignore[arg-type]
            at_ms=_int(f["last_end_ms"]),
            turns=_int(f["last_turns"]),
            inserted=_int(f["last_ins"]),
            updated=_int(f["last_upd"]),
            deleted=_int(f["last_del"]),
            extractor=_str(f["last_extractor"]),
            error=_str(f["last_error"]) or None,
        )
    known = any(v is not None for v in f.values()) or buffered or due is not None or in_flight
    if in_flight:
        state = "running"
    elif dead_lettered:
        state = "dead_lettered"
    elif due is not None:
        state = "due"
    elif known:
        state = "idle"
    else:
        state = "unknown"
    return ThreadStatus(
        user_id=user_id,
        thread_id=thread_id,
        state=state,
        buffered_turns=buffered,
        generation=_int(f["gen"]),
        due_at_ms=due,
        in_flight=in_flight,
        dead_lettered=dead_lettered,
        oldest_turn_ms=_opt(f["first_ms"]) if buffered else None,
        last_turn_ms=_opt(f["last_ms"]),
        committed_generation=_int(f["committed_gen"]),
        attempts=_int(f["attempts"]),
        last=last,
        now_ms=now_ms,
    )
