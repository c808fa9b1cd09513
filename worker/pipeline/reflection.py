"""One reflection of one thread, end to end: lease → snapshot → generation check → retrieve →
extract → journal (commit point) → Qdrant → trim. The Celery task is a thin shell over this.

Outcomes: ``committed``; ``superseded`` (a newer generation exists: no LLM call);
``rolled_back`` (a turn arrived during extraction under the rollback policy: nothing written,
turns kept); ``deferred`` (another reflection of this user holds the lease); ``replayed`` (a
journal left by a crashed worker was applied); ``noop``. Failures raise after rescheduling
with backoff, or after dead-lettering once ``max_attempts`` is reached.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from producer.connect import REDIS_ERRORS
from producer.memories.embeddings import Embedder
from schemas.memory import MemoryRecord, MemorySource
from schemas.messages import BufferedTurn
from schemas.profiles import Profile, get_profile
from schemas.reflection import CommitPlan, DeadLetter, ReflectArgs, ReflectionResult
from schemas.settings import Settings
from worker.errors import EXPECTED, ReverieError
from worker.memory.changes import ChangeLog
from worker.memory.extraction.base import ExtractionOutput, Extractor
from worker.memory.llm import Usage
from worker.memory.planning import build_plan
from worker.memory.retrieval import select_existing
from worker.memory.store import MemoryStore
from worker.observability.logs import get_logger
from worker.pipeline.coordinator import Coordinator, Snapshot
from worker.pipeline.faults import crash_point
from worker.pipeline.siblings import Sibling, joinable, merged, sibling_plans, snapshot_siblings

log = get_logger("reverie.reflection")
MAX_TURNS_PER_REFLECTION = 500
LEASE_JITTER_MS = 200


REASONS = {
    "deferred": "another reflection of this user holds the lease; this thread runs when it is handed over",
    "superseded": "a newer turn arrived (generation {generation}); that generation's task reflects the thread",
    "noop": "no buffered turns left to reflect",
    "rolled_back": "a turn arrived during extraction (rollback policy): nothing written, turns kept for the next pass",
    "sibling_rolled_back": "a turn arrived in a sibling thread reflected with this one (rollback policy): nothing "
    "written, this thread runs again now without it",
}
"""Why a reflection did no work, in words an operator reads in Flower's result column."""


class ReflectionFailed(ReverieError):
    """The reflection failed; it was rescheduled or dead-lettered (``dead_lettered``)."""

    def __init__(self, message: str, *, dead_lettered: bool = False, attempts: int = 0) -> None:
        # Defaults: Celery rebuilds the exception from its message alone (JSON results), and
        # must get this class back so that ``Task.throws`` recognises it as expected.
        super().__init__(message)
        self.dead_lettered = dead_lettered
        self.attempts = attempts


@dataclass
class Reflector:
    settings: Settings
    coordinator: Coordinator
    store: MemoryStore
    embedder: Embedder
    extractor_for: Callable[[Profile], Extractor]
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000)
    on_result: Callable[[ReflectionResult], None] | None = None
    """Called with every finished reflection (demo, tests, metrics)."""
    changes: ChangeLog | None = None
    """Tool and consolidation changes a dead process left journaled are replayed under the lease."""

    def run(self, args: ReflectArgs) -> ReflectionResult:
        try:
            result = self._run(args)
        except ReflectionFailed as e:
            if self.on_result is not None:
                outcome = "dead_lettered" if e.dead_lettered else "failed"
                self.on_result(
                    ReflectionResult(
                        outcome=outcome,
                        user_id=args.user_id,
                        thread_id=args.thread_id,
                        generation=args.generation,
                        reason=str(e),
                    )
                )
            raise
        if self.on_result is not None:
            self.on_result(result)
        return result

    @property
    def _lease_ms(self) -> int:
        return int(self.settings.lease_s * 1000)

    def _run(self, args: ReflectArgs) -> ReflectionResult:
        u, t, gen = args.user_id, args.thread_id, args.generation
        token = self.coordinator.acquire_lease(u, self._lease_ms)
        if token <= 0:  # another reflection of this user: wait for its hand-over, no polling
            jitter_ms = random.randint(0, LEASE_JITTER_MS)
            self.coordinator.reschedule(u, t, token=None, generation=gen, delay_ms=jitter_ms, wait_for_lease=True)
            return ReflectionResult(
                outcome="deferred", user_id=u, thread_id=t, generation=gen, reason=REASONS["deferred"]
            )
        try:
            with self._keep_alive(u, t, token):
                return self._run_leased(args, token)
        except Exception as e:
            self._fail(args, token, e)
            raise  # unreachable: _fail raises

    @contextlib.contextmanager
    def _keep_alive(self, user_id: str, thread_id: str, token: int) -> Iterator[None]:
        """Renew the lease and push the in-flight deadline every third of the lease while the
        reflection runs: LLM calls with retries can outlast both, and an expired lease would
        let a second reflection of this user start (and waste an LLM call before the fence
        stops one of them). A dead or frozen process stops renewing, so its lease still
        expires and the fence still holds."""
        stop = threading.Event()
        interval_s = max(min(self.settings.lease_s, self.settings.inflight_timeout_s) / 3, 0.2)
        inflight_ms = int(self.settings.inflight_timeout_s * 1000)

        def beat() -> None:
            while not stop.wait(interval_s):
                try:
                    if not self.coordinator.renew_lease(user_id, token, self._lease_ms):
                        return  # released, or lost: the fence decides at commit time
                    self.coordinator.heartbeat(user_id, thread_id, inflight_ms)
                except REDIS_ERRORS as e:
                    log.warning("lease renewal failed", user_id=user_id, error=type(e).__name__)

        keeper = threading.Thread(target=beat, name="reverie-lease", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            stop.set()

    def _run_leased(self, args: ReflectArgs, token: int) -> ReflectionResult:
        u, t, gen = args.user_id, args.thread_id, args.generation
        self.coordinator.heartbeat(u, t, int(self.settings.inflight_timeout_s * 1000))
        snap = self.coordinator.snapshot(u, t, MAX_TURNS_PER_REFLECTION)
        if snap.changes and self.changes is not None:  # the snapshot said so: no extra round trip
            self.changes.replay(u, fault=crash_point)
        if snap.journal is not None:
            result = self._replay(snap.journal, token, gen)
            if len(snap.turns) > snap.journal.turn_count or snap.generation > snap.journal.generation:
                # Turns newer than the journaled commit: reflect them on the next pass.
                self.coordinator.reschedule(u, t, token=None, generation=gen, delay_ms=0)
            return result
        if snap.generation != gen:
            self.coordinator.release(u, t, token, gen, "superseded")
            return ReflectionResult(
                outcome="superseded",
                user_id=u,
                thread_id=t,
                generation=gen,
                reason=REASONS["superseded"].format(generation=snap.generation),
            )
        if not snap.turns:
            self.coordinator.release(u, t, token, gen, "noop")
            return ReflectionResult(outcome="noop", user_id=u, thread_id=t, generation=gen, reason=REASONS["noop"])
        profile = get_profile(snap.profile)
        siblings = self._siblings(args, snap, profile) if snap.threads > 1 else []
        turns = merged(t, snap.turns, siblings)
        # One collection and one embedding model from retrieval to plan: the live one, looked up
        # now (a re-embed may have switched it); the write checks again (``MemoryStore.apply``).
        with self.store.pinned(fresh=True):
            out, extractor, plan = self._extract_and_plan(args, turns, profile)
        plan = plan.model_copy(update={"turn_count": len(snap.turns)})  # this thread's buffer
        joined = sibling_plans(plan, siblings)
        status = self.coordinator.prepare(token, plan, self.settings.overlap_policy, joined)
        if status == "superseded":
            self.coordinator.release(u, t, token, gen, "rolled_back", turns=len(snap.turns), extractor=extractor.name)
            return self._result("rolled_back", args, out, extractor, len(turns), reason=REASONS["rolled_back"])
        if status == "sibling_superseded":  # this thread has no newer turn: nothing else would run it
            self.coordinator.reschedule(u, t, token=token, generation=gen, delay_ms=0)
            return self._result("rolled_back", args, out, extractor, len(turns), reason=REASONS["sibling_rolled_back"])
        if status == "overdue":  # newer turns, but past max_wait: commit what was read anyway
            self.coordinator.incr_stats(u, committed_overdue=1)
            log.info("committing past max_wait", turns=len(turns))
        elif status != "ok":
            raise _Retryable(f"commit refused: {status}")
        self._apply(plan, token, joined)
        if joined:
            self.coordinator.incr_stats(u, joint_reflections=1, joined_threads=len(joined))
        result = self._result("committed", args, out, extractor, len(turns), plan)
        return result.model_copy(update={"siblings": [p.thread_id for p in joined]})

    def _siblings(self, args: ReflectArgs, snap: Snapshot, profile: Profile) -> list[Sibling]:
        """The user's other due threads to reflect in this run (none when ``join_siblings`` is 0)."""
        if not self.settings.join_siblings or not joinable(profile):
            return []
        return snapshot_siblings(
            self.coordinator,
            args.user_id,
            args.thread_id,
            snap.profile,
            budget=MAX_TURNS_PER_REFLECTION - len(snap.turns),
            most=self.settings.join_siblings,
        )

    def _extract_and_plan(
        self, args: ReflectArgs, turns: list[BufferedTurn], profile: Profile
    ) -> tuple[ExtractionOutput, Extractor, CommitPlan]:
        u, t, gen = args.user_id, args.thread_id, args.generation
        existing = self._existing(u, t, turns, profile)
        extractor = self.extractor_for(profile)
        crash_point("before_llm")
        try:
            out = extractor.extract(turns, existing)
        except Exception as e:  # failed extractions cost calls too: count them before failing
            usage = getattr(e, "usage", None)
            if isinstance(usage, Usage):
                self.coordinator.incr_stats(u, **usage.stats(), llm_calls_in_failures=usage.llm_calls)
            raise
        self.coordinator.incr_stats(
            u, **out.stats(), llm_text_replies=out.text_replies, llm_text_tool_calls=out.text_tool_calls
        )
        plan = build_plan(
            user_id=u,
            thread_id=t,
            generation=gen,
            namespace=self.settings.namespace,
            turns=turns,
            existing=existing,
            ops=out.ops,
            embedder=self.embedder,
            kind=profile.kind,
            now_ms=self.now_ms(),
            ns=profile.format_namespace(u, t),
            tombstone=profile.delete_mode == "tombstone",
        ).model_copy(update={"extractor": extractor.name})  # journaled: a replay reports it too
        return out, extractor, plan

    def _existing(
        self, user_id: str, thread_id: str, turns: list[BufferedTurn], profile: Profile
    ) -> list[MemoryRecord]:
        return select_existing(
            self.store,
            self.embedder,
            user_id=user_id,
            thread_id=thread_id,
            turns=turns,
            profile=profile,
            limit=self.settings.existing_limit,
        )

    def _apply(self, plan: CommitPlan, token: int, siblings: list[CommitPlan] | None = None) -> None:
        source = MemorySource(
            thread_id=plan.thread_id,
            generation=plan.generation,
            turn_ids=plan.turn_ids[:100],
            turn_count=plan.turn_count,
        )
        # Fencing: a worker that stalled after journaling (GC pause, slow network) may have
        # lost its lease to a newer reflection of this user, which replays this journal and may
        # already have committed later changes. Writing now could overwrite them, so check (and
        # extend) the lease right before touching Qdrant; the replay by the lease holder finishes.
        if not self.coordinator.renew_lease(plan.user_id, token, self._lease_ms):
            raise _Retryable("lease lost before the Qdrant write")
        if not self.coordinator.journal_replicated(plan.user_id):  # REVERIE_REPLICA_WAIT_MS
            raise _Retryable("the commit journal is not on a replica yet (the replica lags)")
        crash_point("after_journal")
        self.store.apply(plan.user_id, plan.ops, source=source, now_ms=plan.created_ms)
        crash_point("after_qdrant_write")
        for sibling in siblings or ():  # first: the reflected thread's finalize frees the lease
            if self.coordinator.finalize(token, sibling, keep_lease=True) not in ("ok", "no_journal"):
                raise _Retryable("finalize of a sibling thread refused: lease lost")
            crash_point("after_sibling_finalize")
        status = self.coordinator.finalize(token, plan)
        if status not in ("ok", "no_journal"):
            raise _Retryable(f"finalize refused: {status}")

    def _replay(self, plan: CommitPlan, token: int, gen: int) -> ReflectionResult:
        """A worker died between journaling and trimming: finish its commit, no LLM call."""
        log.info(
            "replaying commit journal",
            user_id=plan.user_id,
            thread_id=plan.thread_id,
            generation=plan.generation,
        )
        self._apply(plan, token)
        counts = _count_ops(plan)
        return ReflectionResult(
            outcome="replayed",
            user_id=plan.user_id,
            thread_id=plan.thread_id,
            generation=gen,
            turns=plan.turn_count,
            **counts,
        )

    def _result(
        self,
        outcome: str,
        args: ReflectArgs,
        out: ExtractionOutput,
        extractor: Extractor,
        turns: int,
        plan: CommitPlan | None = None,
        reason: str | None = None,
    ) -> ReflectionResult:
        counts = _count_ops(plan) if plan else {}
        return ReflectionResult(
            outcome=outcome,  # type: ignore[arg-type]
            user_id=args.user_id,
            thread_id=args.thread_id,
            generation=args.generation,
            turns=turns,
            llm_calls=out.llm_calls,
            prompt_tokens=out.prompt_tokens,
            completion_tokens=out.completion_tokens,
            extractor=extractor.name,
            reason=reason,
            **counts,
        )

    def _fail(self, args: ReflectArgs, token: int, err: Exception) -> None:
        u, t, gen = args.user_id, args.thread_id, args.generation
        attempts = self.coordinator.attempts(u, t) + 1
        reason = f"{type(err).__name__}: {err}"[:500]
        letter = DeadLetter(
            user_id=u, thread_id=t, generation=gen, attempts=attempts, reason=reason, failed_ms=self.now_ms()
        )
        delay_ms = min(60_000, 1000 * 2 ** min(attempts, 6)) + random.randint(0, 500)
        attempts, dead = self.coordinator.reschedule(
            u,
            t,
            token=token,
            generation=gen,
            delay_ms=delay_ms,
            failure=letter,
            max_attempts=self.settings.max_attempts,
            error=type(err).__name__,
        )
        event = "reflection dead-lettered" if dead else "reflection failed"
        ids = {"user_id": u, "thread_id": t, "generation": gen, "attempts": attempts, "error": type(err).__name__}
        if isinstance(err, EXPECTED):  # normal operation: one line, no traceback
            log.warning(event, **ids)
        else:  # a bug or an unknown fault: once, with its traceback
            log.error(event, **ids, unexpected=True, exc_info=err)
        fate = f"dead-lettered (reverie dlq show {u} {t})" if dead else f"retry in {delay_ms / 1000:.0f} s"
        message = f"attempt {attempts} of {self.settings.max_attempts}, {fate}: {reason}"
        raise ReflectionFailed(message, dead_lettered=dead, attempts=attempts) from err


class _Retryable(ReverieError):
    """A commit step was refused (lease lost): retry later, nothing half-written."""


def _count_ops(plan: CommitPlan) -> dict[str, int]:
    return {
        "inserted": sum(op.op == "insert" for op in plan.ops),
        "updated": sum(op.op == "update" for op in plan.ops),
        "deleted": sum(op.op == "delete" for op in plan.ops),
    }
