"""The worker side of Redis: claiming due threads, per-user leases, snapshots, the
prepare/finalize commit protocol and dead letters. Thin typed wrappers over the pipeline's Lua
scripts (``worker/pipeline/lua``)."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from producer.keys import member, split_member
from schemas.errors import DecodeError
from schemas.events import encode_events
from schemas.messages import BufferedTurn
from schemas.reflection import CommitPlan, DeadLetter
from worker.memory.events import events_from_plan
from worker.memory.history import encode, entries_from_plan
from worker.pipeline.keys import WorkerKeys
from worker.pipeline.scripts import PipelineScripts


@dataclass(frozen=True, slots=True)
class Snapshot:
    generation: int
    profile: str
    journal: CommitPlan | None
    turns: list[BufferedTurn]


@dataclass(frozen=True, slots=True)
class Claimed:
    user_id: str
    thread_id: str
    generation: int
    lag_ms: int


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def decode_turn(raw: bytes | str) -> BufferedTurn:
    try:
        return BufferedTurn.model_validate_json(raw)
    except ValueError as e:
        raise DecodeError("buffered turn is not valid JSON of the turn schema") from e


def op_counts(plan: CommitPlan) -> tuple[int, int, int]:
    """Inserts, updates and deletes (tombstones included) of a plan."""
    ops = [op.op for op in plan.ops]
    return ops.count("insert"), ops.count("update"), ops.count("delete")


def decode_plan(raw: bytes | str) -> CommitPlan:
    try:
        return CommitPlan.model_validate_json(raw)
    except ValueError as e:
        raise DecodeError("commit journal does not match CommitPlan") from e


class Coordinator:
    """One per process; safe to share between threads (redis-py pool)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: WorkerKeys,
        *,
        history_ttl_s: int = 90 * 86400,
        history_max: int = 10_000,
        events_max_len: int = 0,
    ) -> None:
        self.r = client
        self.keys = keys
        self.scripts = PipelineScripts(client)
        self.history_ttl_s = history_ttl_s
        self.history_max = history_max
        self.events_max_len = events_max_len
        """Change events kept in the stream (``MAXLEN ~``); 0 writes none."""

    # -- dispatch ---------------------------------------------------------------------------
    def due_candidates(self, limit: int) -> tuple[list[str], int]:
        """Members due now, and ms until the next due member (-1 if none)."""
        reply = self.scripts.due_candidates(keys=[self.keys.due_ss], args=[limit])
        return [_s(m) for m in reply[1:]], int(reply[0])

    def claim(self, members: list[str], inflight_ms: int) -> list[Claimed]:
        """Claim each member atomically (pipelined: one round trip for the batch)."""
        if not members:
            return []
        pipe = self.r.pipeline(transaction=False)
        for m in members:
            u, t = split_member(m)
            self.scripts.claim(
                keys=[self.keys.due_ss, self.keys.inflight_ss, self.keys.thread(u, t), self.keys.stats],
                args=[m, inflight_ms],
                client=pipe,
            )
        out = []
        for m, (gen, lag) in zip(members, pipe.execute(), strict=True):
            if int(gen) > 0:
                u, t = split_member(m)
                out.append(Claimed(u, t, int(gen), int(lag)))
        return out

    def requeue_expired(self, limit: int = 1000) -> int:
        return int(
            self.scripts.requeue_expired(keys=[self.keys.inflight_ss, self.keys.due_ss, self.keys.stats], args=[limit])
        )

    def inflight_count(self) -> int:
        return int(self.r.zcard(self.keys.inflight_ss))

    def heartbeat(self, user_id: str, thread_id: str, inflight_ms: int) -> None:
        """Push the in-flight deadline forward while a reflection runs."""
        t = self.r.time()
        now_ms = int(t[0]) * 1000 + int(t[1]) // 1000
        self.r.zadd(self.keys.inflight_ss, {member(user_id, thread_id): now_ms + inflight_ms}, xx=True)

    # -- lease ------------------------------------------------------------------------------
    def acquire_lease(self, user_id: str, ttl_ms: int) -> int:
        """A fencing token (> 0), or minus the ms left on the lease another reflection holds."""
        return int(self.scripts.lease_acquire(keys=[self.keys.lease(user_id), self.keys.fence(user_id)], args=[ttl_ms]))

    def renew_lease(self, user_id: str, token: int, ttl_ms: int) -> bool:
        return bool(self.scripts.lease_renew(keys=[self.keys.lease(user_id)], args=[token, ttl_ms]))

    def release_lease(self, user_id: str, token: int) -> bool:
        """Free the lease if it is still ours (work outside a reflection: consolidation, forget),
        and hand it over to the user's threads that waited for it."""
        keys = [self.keys.lease(user_id), self.keys.due_ss, self.keys.waiters(user_id)]
        return bool(self.scripts.lease_release(keys=keys, args=[token]))

    def flush_due(self, limit: int, user_id: str = "") -> int:
        """Make pending threads (of ``user_id``, or of everyone) due now, ignoring debounce."""
        return int(self.scripts.flush_due(keys=[self.keys.due_ss, self.keys.stats], args=[limit, user_id]))

    # -- reflection -------------------------------------------------------------------------
    def snapshot(self, user_id: str, thread_id: str, max_turns: int) -> Snapshot:
        reply = self.scripts.snapshot(
            keys=[
                self.keys.thread(user_id, thread_id),
                self.keys.buffer(user_id, thread_id),
                self.keys.journal(user_id, thread_id),
            ],
            args=[max_turns],
        )
        journal = decode_plan(reply[2]) if reply[2] else None
        return Snapshot(int(reply[0]), _s(reply[1]), journal, [decode_turn(x) for x in reply[3:]])

    def prepare(self, token: int, plan: CommitPlan, policy: str) -> str:
        u, t = plan.user_id, plan.thread_id
        return _s(
            self.scripts.prepare(
                keys=[self.keys.thread(u, t), self.keys.lease(u), self.keys.journal(u, t)],
                args=[token, plan.generation, policy, plan.model_dump_json()],
            )
        )

    def finalize(self, token: int, plan: CommitPlan, idle_ttl_s: int = 86400) -> str:
        u, t = plan.user_id, plan.thread_id
        return _s(
            self.scripts.finalize(
                keys=[
                    self.keys.thread(u, t),
                    self.keys.buffer(u, t),
                    self.keys.lease(u),
                    self.keys.journal(u, t),
                    self.keys.inflight_ss,
                    self.keys.stats,
                    self.keys.history(u),
                    self.keys.changed_ss,
                    self.keys.due_ss,
                    self.keys.waiters(u),
                    self.keys.events,
                ],
                args=[
                    token,
                    plan.turn_count,
                    member(u, t),
                    plan.generation,
                    idle_ttl_s,
                    u,
                    self.history_ttl_s,
                    self.history_max,
                    *op_counts(plan),
                    plan.extractor,
                    self.events_max_len,
                    encode_events(events_from_plan(plan)) if self.events_max_len else "[]",
                    *encode(entries_from_plan(plan)),
                ],
            )
        )

    def release(
        self,
        user_id: str,
        thread_id: str,
        token: int,
        generation: int,
        stat: str,
        *,
        turns: int = 0,
        extractor: str = "",
    ) -> None:
        """End a reflection without a commit; ``stat`` is its outcome (recorded as the thread's
        last reflection with ``turns`` read and the ``extractor`` that ran, if any)."""
        self.scripts.release(
            keys=[
                self.keys.thread(user_id, thread_id),
                self.keys.lease(user_id),
                self.keys.inflight_ss,
                self.keys.stats,
                self.keys.due_ss,
                self.keys.waiters(user_id),
            ],
            args=[token, member(user_id, thread_id), generation, stat, turns, extractor],
        )

    def reschedule(
        self,
        user_id: str,
        thread_id: str,
        *,
        token: int | None,
        generation: int,
        delay_ms: int,
        failure: DeadLetter | None = None,
        max_attempts: int = 5,
        wait_for_lease: bool = False,
        error: str = "",
        extractor: str = "",
    ) -> tuple[int, bool]:
        """Back in the due set after ``delay_ms``; a counted failure may dead-letter instead (and
        is recorded as the last reflection, with the ``error`` class). With ``wait_for_lease``
        the thread waits for the user's lease to be released (or to run out)."""
        attempts, dead = self.scripts.reschedule(
            keys=[
                self.keys.thread(user_id, thread_id),
                self.keys.lease(user_id),
                self.keys.inflight_ss,
                self.keys.due_ss,
                self.keys.dlq,
                self.keys.stats,
                self.keys.waiters(user_id),
            ],
            args=[
                "" if token is None else token,
                member(user_id, thread_id),
                generation,
                delay_ms,
                1 if failure else 0,
                max_attempts,
                failure.model_dump_json() if failure else "",
                1 if wait_for_lease else 0,
                error,
                extractor,
            ],
        )
        return int(attempts), bool(dead)

    def attempts(self, user_id: str, thread_id: str) -> int:
        return int(self.r.hget(self.keys.thread(user_id, thread_id), "attempts") or 0)

    def incr_stats(self, **counts: int) -> None:
        pipe = self.r.pipeline(transaction=False)
        for name, n in counts.items():
            if n:
                pipe.hincrby(self.keys.stats, name, n)
        pipe.execute()

    def stats(self) -> dict[str, int]:
        return {_s(k): int(v) for k, v in self.r.hgetall(self.keys.stats).items()}

    # -- dead letters -----------------------------------------------------------------------
    def dead_letters(self) -> list[DeadLetter]:
        return [DeadLetter.model_validate_json(v) for v in self.r.hgetall(self.keys.dlq).values()]

    def replay_dead(self, user_id: str, thread_id: str) -> bool:
        return bool(
            self.scripts.replay_dead(
                keys=[
                    self.keys.dlq,
                    self.keys.thread(user_id, thread_id),
                    self.keys.due_ss,
                    self.keys.buffer(user_id, thread_id),
                ],
                args=[member(user_id, thread_id)],
            )
        )

    def drop_dead(self, user_id: str, thread_id: str) -> int | None:
        """Discard a dead letter with the thread's buffered turns, journal and state (the message
        id set stays, so a chat server retrying those turns does not bring them back). Returns
        how many turns were discarded, or None if there was no dead letter. Turns submitted
        after the thread was dead-lettered are in the same buffer and are discarded too."""
        m = member(user_id, thread_id)
        buf = self.keys.buffer(user_id, thread_id)
        with self.r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self.keys.dlq, buf)
                if not pipe.hexists(self.keys.dlq, m):
                    return None
                turns = int(pipe.llen(buf))
                pipe.multi()
                pipe.hdel(self.keys.dlq, m)
                pipe.zrem(self.keys.due_ss, m)
                pipe.delete(buf, self.keys.journal(user_id, thread_id), self.keys.thread(user_id, thread_id))
                pipe.hincrby(self.keys.stats, "dead_dropped", 1)
                pipe.execute()
            except redis.WatchError:
                return self.drop_dead(user_id, thread_id)  # a turn arrived meanwhile: count again
        return turns

    def journal_raw(self, user_id: str, thread_id: str) -> str | None:
        raw = self.r.get(self.keys.journal(user_id, thread_id))
        return None if raw is None else _s(raw)
