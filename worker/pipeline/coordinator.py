"""The worker side of Redis: claiming due threads, per-user leases, snapshots, the
prepare/finalize commit protocol and dead letters. Thin typed wrappers over the pipeline's Lua
scripts (``worker/pipeline/lua``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
import structlog

from producer.keys import Keys, member, split_member
from producer.replicas import target
from producer.text import as_text
from schemas.errors import DecodeError
from schemas.events import encode_events
from schemas.messages import BufferedTurn
from schemas.reflection import CommitPlan, DeadLetter
from worker.memory.events import events_from_plan
from worker.memory.history import encode, entries_from_plan
from worker.pipeline.keys import WorkerKeys
from worker.pipeline.scripts import PipelineScripts, run_many
from worker.pipeline.shards import fair_share, sum_counters

log = structlog.get_logger("reverie.coordinator")


@dataclass(frozen=True, slots=True)
class Snapshot:
    generation: int
    profile: str
    journal: CommitPlan | None
    turns: list[BufferedTurn]
    changes: bool = False
    """The user has journaled changes of tool calls or consolidation (``worker.memory.changes``)."""
    threads: int = 1
    """Threads in the user's index (submitted to in the last days): siblings are looked for
    only when there are others."""


@dataclass(frozen=True, slots=True)
class Claimed:
    user_id: str
    thread_id: str
    generation: int
    lag_ms: int


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
    """One per process; safe to share between threads (redis-py pool). Works on every shard of
    the key layout: a user's calls go to the user's shard, the dispatcher's to all of them."""

    def __init__(
        self,
        client: Any,
        keys: Keys,
        *,
        history_ttl_s: int = 90 * 86400,
        history_max: int = 10_000,
        events_max_len: int = 0,
        replica_wait_ms: int = 0,
    ) -> None:
        self.r = client
        self.replica_wait_ms = replica_wait_ms
        """``WAIT`` for one replica after journaling a commit plan (0: do not wait)."""
        self.keys = WorkerKeys.of(keys)
        self.scripts = PipelineScripts(client)
        self.history_ttl_s = history_ttl_s
        self.history_max = history_max
        self.events_max_len = events_max_len
        """Change events kept in the stream (``MAXLEN ~``); 0 writes none."""
        self._turn = 0
        """Which shard goes first in the next pass (rotates, so no shard always wins the remainder)."""

    # -- dispatch ---------------------------------------------------------------------------
    def due_candidates(self, limit: int) -> tuple[list[str], int]:
        """Members due now (at most ``limit``, shared fairly between the shards that have any:
        round robin from a rotating start), and ms until the next due member (-1 if none)."""
        shards = self.keys.all_shards()
        replies = run_many(self.r, self.scripts.due_candidates, [([s.due_ss], [limit]) for s in shards])
        start, self._turn = self._turn % len(shards), self._turn + 1
        lists = [[as_text(m) for m in reply[1:]] for reply in replies[start:] + replies[:start]]
        heads = [int(reply[0]) for reply in replies if int(reply[0]) != -1]
        return fair_share(lists, limit), min(heads) if heads else -1

    def claim(self, members: list[str], inflight_ms: int) -> list[Claimed]:
        """Claim members atomically: one CLAIM call per shard, all in one pipeline."""
        if not members:
            return []
        by_shard: dict[int, list[str]] = {}
        for m in members:
            by_shard.setdefault(self.keys.shard_of(split_member(m)[0]), []).append(m)
        calls = []
        for n, group in by_shard.items():
            shard = self.keys.shard(n)
            threads = [self.keys.thread(*split_member(m)) for m in group]
            calls.append(([shard.due_ss, shard.inflight_ss, shard.stats, *threads], [inflight_ms, *group]))
        claimed: dict[str, Claimed] = {}
        for group, reply in zip(by_shard.values(), run_many(self.r, self.scripts.claim, calls), strict=True):
            for m, gen, lag in zip(group, reply[::2], reply[1::2], strict=True):
                if int(gen) > 0:
                    u, t = split_member(m)
                    claimed[m] = Claimed(u, t, int(gen), int(lag))
        return [claimed[m] for m in members if m in claimed]

    def requeue_expired(self, limit: int = 1000) -> int:
        calls = [([s.inflight_ss, s.due_ss, s.stats], [limit]) for s in self.keys.all_shards()]
        return sum(int(n) for n in run_many(self.r, self.scripts.requeue_expired, calls))

    def inflight_count(self) -> int:
        pipe = self.r.pipeline(transaction=False)
        for shard in self.keys.all_shards():
            pipe.zcard(shard.inflight_ss)
        return sum(int(n) for n in pipe.execute())

    def heartbeat(self, user_id: str, thread_id: str, inflight_ms: int) -> None:
        """Push the in-flight deadline forward while a reflection runs (one round trip)."""
        key = self.keys.shard_for(user_id).inflight_ss
        self.scripts.heartbeat(keys=[key], args=[member(user_id, thread_id), inflight_ms])

    # -- lease ------------------------------------------------------------------------------
    def acquire_lease(self, user_id: str, ttl_ms: int) -> int:
        """A fencing token (> 0), or minus the ms left on the lease another reflection holds."""
        return int(self.scripts.lease_acquire(keys=[self.keys.lease(user_id), self.keys.fence(user_id)], args=[ttl_ms]))

    def renew_lease(self, user_id: str, token: int, ttl_ms: int) -> bool:
        return bool(self.scripts.lease_renew(keys=[self.keys.lease(user_id)], args=[token, ttl_ms]))

    def release_lease(self, user_id: str, token: int) -> bool:
        """Free the lease if it is still ours (work outside a reflection: consolidation, forget),
        and hand it over to the user's threads that waited for it."""
        keys = [self.keys.lease(user_id), self.keys.shard_for(user_id).due_ss, self.keys.waiters(user_id)]
        return bool(self.scripts.lease_release(keys=keys, args=[token]))

    def flush_due(self, limit: int, user_id: str = "") -> int:
        """Make pending threads (of ``user_id``, or of everyone) due now, ignoring debounce;
        at most ``limit`` per shard."""
        shards = [self.keys.shard_for(user_id)] if user_id else self.keys.all_shards()
        calls = [([s.due_ss, s.stats], [limit, user_id]) for s in shards]
        return sum(int(n) for n in run_many(self.r, self.scripts.flush_due, calls))

    # -- reflection -------------------------------------------------------------------------
    def snapshot(self, user_id: str, thread_id: str, max_turns: int) -> Snapshot:
        reply = self.scripts.snapshot(
            keys=[
                self.keys.thread(user_id, thread_id),
                self.keys.buffer(user_id, thread_id),
                self.keys.journal(user_id, thread_id),
                self.keys.changes(user_id),
                self.keys.user_threads(user_id),
            ],
            args=[max_turns],
        )
        journal = decode_plan(reply[2]) if reply[2] else None
        turns = [decode_turn(x) for x in reply[5:]]
        return Snapshot(
            int(reply[0]), as_text(reply[1]), journal, turns, changes=bool(int(reply[3])), threads=int(reply[4])
        )

    def prepare(self, token: int, plan: CommitPlan, policy: str, siblings: Sequence[CommitPlan] = ()) -> str:
        """Journal ``plan`` (and the plans of the ``siblings`` of a joint reflection) in one step."""
        keys, args = [self.keys.lease(plan.user_id)], [token, policy]
        for p in (plan, *siblings):
            keys += [self.keys.thread(p.user_id, p.thread_id), self.keys.journal(p.user_id, p.thread_id)]
            args += [p.generation, p.model_dump_json()]
        return as_text(self.scripts.prepare(keys=keys, args=args))

    def journal_replicated(self, user_id: str) -> bool:
        """With ``replica_wait_ms``: is what the user's shard holds so far (the commit journal
        included) on a replica? ``WAIT 1``; a primary with no replica connected counts as yes
        (no failover can promote a replica that lacks it). Checked before memories are written,
        so that a failover replays the journal (same ids) rather than reflecting again (new ids:
        duplicates)."""
        if not self.replica_wait_ms:
            return True
        node = target(self.r, self.keys.lease(user_id))
        if int(self.r.execute_command("WAIT", 1, self.replica_wait_ms, **node)) >= 1:
            return True
        role = self.r.execute_command("ROLE", **node)
        if len(role[2]) == 0:
            log.warning("no replica connected: the commit journal is on the primary only", user_id=user_id)
            return True
        return False

    def finalize(self, token: int, plan: CommitPlan, idle_ttl_s: int = 86400, *, keep_lease: bool = False) -> str:
        u, t = plan.user_id, plan.thread_id
        shard = self.keys.shard_for(u)
        return as_text(
            self.scripts.finalize(
                keys=[
                    self.keys.thread(u, t),
                    self.keys.buffer(u, t),
                    self.keys.lease(u),
                    self.keys.journal(u, t),
                    shard.inflight_ss,
                    shard.stats,
                    self.keys.history(u),
                    shard.changed_ss,
                    shard.due_ss,
                    self.keys.waiters(u),
                    shard.events,
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
                    1 if keep_lease else 0,
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
        shard = self.keys.shard_for(user_id)
        self.scripts.release(
            keys=[
                self.keys.thread(user_id, thread_id),
                self.keys.lease(user_id),
                shard.inflight_ss,
                shard.stats,
                shard.due_ss,
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
        shard = self.keys.shard_for(user_id)
        attempts, dead = self.scripts.reschedule(
            keys=[
                self.keys.thread(user_id, thread_id),
                self.keys.lease(user_id),
                shard.inflight_ss,
                shard.due_ss,
                shard.dlq,
                shard.stats,
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

    def incr_stats(self, user_id: str | None = None, /, **counts: int) -> None:
        """Add to the fleet-wide counters (in ``user_id``'s shard, else the first shard's)."""
        key = (self.keys.shard_for(user_id) if user_id else self.keys.shard(0)).stats
        pipe = self.r.pipeline(transaction=False)
        for name, n in counts.items():
            if n:
                pipe.hincrby(key, name, n)
        pipe.execute()

    def stats(self) -> dict[str, int]:
        """The counters, summed over the shards."""
        pipe = self.r.pipeline(transaction=False)
        for shard in self.keys.all_shards():
            pipe.hgetall(shard.stats)
        return sum_counters(pipe.execute())

    # -- dead letters -----------------------------------------------------------------------
    def dead_letters(self) -> list[DeadLetter]:
        pipe = self.r.pipeline(transaction=False)
        for shard in self.keys.all_shards():
            pipe.hvals(shard.dlq)
        return [DeadLetter.model_validate_json(v) for values in pipe.execute() for v in values]

    def dead_letter_raw(self, user_id: str, thread_id: str) -> bytes | None:
        return self.r.hget(self.keys.shard_for(user_id).dlq, member(user_id, thread_id))  # type: ignore[no-any-return]

    def replay_dead(self, user_id: str, thread_id: str) -> bool:
        return bool(
            self.scripts.replay_dead(
                keys=[
                    self.keys.shard_for(user_id).dlq,
                    self.keys.thread(user_id, thread_id),
                    self.keys.shard_for(user_id).due_ss,
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
        shard = self.keys.shard_for(user_id)
        with self.r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(shard.dlq, buf)
                if not pipe.hexists(shard.dlq, m):
                    return None
                turns = int(pipe.llen(buf))
                pipe.multi()
                pipe.hdel(shard.dlq, m)
                pipe.zrem(shard.due_ss, m)
                pipe.delete(buf, self.keys.journal(user_id, thread_id), self.keys.thread(user_id, thread_id))
                pipe.hincrby(shard.stats, "dead_dropped", 1)
                pipe.execute()
            except redis.WatchError:
                return self.drop_dead(user_id, thread_id)  # a turn arrived meanwhile: count again
        return turns

    def journal_raw(self, user_id: str, thread_id: str) -> str | None:
        raw = self.r.get(self.keys.journal(user_id, thread_id))
        return None if raw is None else as_text(raw)
