"""The re-embed, phase by phase, checkpointed in Redis after every batch and every pass.

1. ``copy``: record where the change-event streams stand, create the new collection (same
   tenant and payload indexes), then copy every point in batches: scroll the old collection,
   embed ``content`` with the new model, upsert with the same id and payload.
2. ``catchup``: replay the events since the recorded position into the new collection, pass
   after pass until a pass finds less than a batch; compare the two collections once, whole;
   one last pass; then switch the live alias atomically (delete + create in one call).
3. ``switched``: keep replaying events until every process has looked the alias up again
   (``collection_refresh_s`` plus a grace), one last pass, done. The old collection is kept
   (``p:reembed:<ns>:old``) until ``--drop-old``.

Running again continues from the checkpoint; the live alias itself says whether the switch
happened (a crash between the switch and its checkpoint loses nothing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from producer.memories.embeddings import Embedder, embedder_factory, sanitize_name
from producer.memories.layout import collection_name
from producer.memories.live import model_id
from schemas.reembed import ReembedArgs, ReembedEstimate, ReembedReport, ReembedState
from schemas.settings import Settings
from worker.features.reembed import changes as events
from worker.features.reembed.aliases import switch_alias
from worker.features.reembed.checkpoint import Checkpoint, load_state, old_collections
from worker.features.reembed.errors import ReembedRefused
from worker.features.reembed.plan import check_model, estimate
from worker.features.reembed.reconcile import AfterSwitch, before_switch, compare_all
from worker.features.reembed.transfer import Transfer
from worker.memory.store import MemoryStore
from worker.memory.store.collections import create_collection
from worker.observability.logs import get_logger
from worker.pipeline.keys import WorkerKeys

log = get_logger("reverie.reembed")
SETTLE_GRACE_S = 1.0
"""Waited beyond ``collection_refresh_s`` after the switch before the last pass."""
PASS_INTERVAL_S = 0.25
MAX_PASSES = 50
"""Catch-up passes before the switch at most (under a steady write load they never reach zero;
what is left is replayed after the switch with the same guarantees)."""
Progress = Callable[[ReembedState], None]


@dataclass
class Context:
    """What a re-embed needs: the worker's store (its client, local-mode lock and live alias),
    Redis (lock, checkpoint, events) and the settings."""

    store: MemoryStore
    redis: redis.Redis
    keys: WorkerKeys
    settings: Settings


class Paused(Exception):
    """The time budget ran out between two steps; the checkpoint holds everything."""


class Reembed:
    """One run of ``reverie reembed --to MODEL``; ``progress`` is called after every checkpoint."""

    def __init__(self, ctx: Context, *, progress: Progress | None = None, budget_s: float | None = None) -> None:
        self.ctx = ctx
        self.progress = progress
        self.deadline = None if budget_s is None else time.monotonic() + budget_s
        self.started = time.monotonic()

    # -- entry points

    def run(self, args: ReembedArgs) -> ReembedReport:
        """Start or continue the re-embed to ``args.to``."""
        assert args.to is not None
        self._check_setup()
        with Checkpoint(self.ctx.redis, self.ctx.keys, self.ctx.settings.namespace) as cp:
            state = cp.load()
            if state is not None:
                self._same_model(args.to, state)
            embedder = self._embedder(args.to if state is None else state.target_model, probe=True)
            state = state or self._start(cp, args, embedder)
            state.batch_size = args.batch_size
            transfer = Transfer(self.ctx.store, state.source, state.target, embedder)
            try:
                self._phases(cp, state, transfer)
            except Paused:
                return self._report(state, continued=True)
            return self._report(state)

    def estimate(self, args: ReembedArgs) -> ReembedEstimate:
        """``--dry-run``: the same checks as a run, then counts and cost; writes nothing."""
        assert args.to is not None
        self._check_setup()
        state = load_state(self.ctx.redis, self.ctx.keys, self.ctx.settings.namespace)
        if state is not None:
            self._same_model(args.to, state)
        embedder = self._embedder(args.to, probe=False)
        if state is not None:  # unfinished: what it copies is the same (its target exists)
            source, source_model, target = state.source, state.source_model, state.target
        else:
            source, source_model = self._source()
            target = self._target_name(embedder)
            self._check_target(source, target)
        return estimate(
            Transfer(self.ctx.store, source, target, embedder), source_model, args.to, embedder, args.batch_size
        )

    # -- setup

    def _check_setup(self) -> None:
        s = self.ctx.settings
        if s.collection_strategy != "shared" or self.ctx.store.live is None:
            raise ReembedRefused(
                "REVERIE_COLLECTION_STRATEGY=per_user: re-embedding supports the shared collection only "
                "(one collection per user has no alias to switch); use the shared strategy"
            )
        if s.events_max_len == 0:
            raise ReembedRefused(
                "re-embedding replays the change events to keep writes made meanwhile: REVERIE_EVENTS_MAX_LEN is 0 "
                "(events off); set it above 0"
            )

    @staticmethod
    def _same_model(model: str, state: ReembedState) -> None:
        if sanitize_name(model) != sanitize_name(state.target_model):
            raise ReembedRefused(
                f"--to: a re-embed to {state.target_model!r} is unfinished (phase {state.phase}); run "
                f"`reverie reembed --to {state.target_model}` to finish it, or `--abort` to discard it"
            )

    def _embedder(self, model: str, *, probe: bool) -> Embedder:
        s = self.ctx.settings
        custom = bool(s.embedding_api_base)
        return check_model(model, embedder_factory(s), custom_base=custom, probe=probe)

    def _source(self) -> tuple[str, str]:
        live = self.ctx.store.live
        assert live is not None
        view = live.refresh()
        if not self.ctx.store._call(self.ctx.store.client.collection_exists, view.collection):
            raise ReembedRefused(
                f"the live collection {view.collection} does not exist yet (no memory written): set "
                "REVERIE_EMBEDDING_MODEL instead"
            )
        return view.collection, model_id(view.embedder)

    def _target_name(self, embedder: Embedder) -> str:
        return collection_name(self.ctx.settings.namespace, embedder.name, "shared")

    def _check_target(self, source: str, target: str) -> None:
        if target == source:
            raise ReembedRefused(f"--to: {source} is already the live collection (same embedding model); nothing to do")
        if self.ctx.store._call(self.ctx.store.client.collection_exists, target):
            kept = target in old_collections(self.ctx.redis, self.ctx.keys, self.ctx.settings.namespace)
            why = (
                "it is kept from an earlier re-embed: drop it first with `reverie reembed --drop-old`"
                if kept
                else ("remove it first, or re-embed to another model")
            )
            raise ReembedRefused(f"--to: collection {target} already exists; {why}")

    def _start(self, cp: Checkpoint, args: ReembedArgs, embedder: Embedder) -> ReembedState:
        assert args.to is not None
        source, source_model = self._source()
        target = self._target_name(embedder)
        self._check_target(source, target)
        transfer = Transfer(self.ctx.store, source, target, embedder)
        state = ReembedState(
            namespace=self.ctx.settings.namespace,
            source=source,
            source_model=source_model,
            target=target,
            target_model=args.to,
            batch_size=args.batch_size,
            cursors=events.positions(self.ctx.redis, self.ctx.keys),  # before the copy reads anything
            total=transfer.count(source),
            started_ms=_now_ms(),
        )
        cp.save(state)  # first: a crash from here on is continued, never refused as "target exists"
        log.info("re-embed started", source=source, target=target, memories=state.total)
        return state

    # -- phases

    def _phases(self, cp: Checkpoint, state: ReembedState, transfer: Transfer) -> None:
        live = self.ctx.store.live
        assert live is not None
        if live.target() == state.target and state.phase in ("copy", "catchup"):  # switched, not yet recorded
            state.phase, state.switched_ms = "switched", _now_ms()
        if state.phase == "copy":
            if not self.ctx.store._call(self.ctx.store.client.collection_exists, state.target):
                create_collection(self.ctx.store, state.target, transfer.embedder)
                state.offset, state.copied = None, 0
            self._copy(cp, state, transfer)
        if state.phase == "catchup":
            self._catch_up(cp, state, transfer)
        if state.phase == "switched":
            self._settle(cp, state, transfer)

    def _copy(self, cp: Checkpoint, state: ReembedState, transfer: Transfer) -> None:
        while True:
            self._step(cp)
            points, offset = transfer.page(state.source, state.offset, state.batch_size)
            state.copied += transfer.copy([(p.id, p.payload or {}) for p in points])
            state.offset = offset
            if offset is None or not points:
                state.phase, state.offset = "catchup", None
            self._save(cp, state)
            if state.phase != "copy":
                return
            self._pause_if_due()

    def _catch_up(self, cp: Checkpoint, state: ReembedState, transfer: Transfer) -> None:
        for _ in range(MAX_PASSES):
            self._step(cp)
            if self._pass_before(cp, state, transfer) < state.batch_size:
                break
            self._pause_if_due()
        if not state.compared:
            state.caught_up += compare_all(transfer, state.batch_size, on_page=lambda: self._step(cp))
            state.compared = True
            self._save(cp, state)
        self._pass_before(cp, state, transfer)  # the last one: the switch follows at once
        live = self.ctx.store.live
        assert live is not None
        switch_alias(self.ctx.store, live.alias, state.target)
        state.phase, state.switched_ms = "switched", _now_ms()
        live.refresh()  # this process follows at once (local mode: the only one)
        self._save(cp, state)
        log.info("re-embed switched the live alias", source=state.source, target=state.target)

    def _pass_before(self, cp: Checkpoint, state: ReembedState, transfer: Transfer) -> int:
        found, cursors, lost = events.read_changes(self.ctx.redis, self.ctx.keys, state.cursors)
        done = before_switch(transfer, found, state.batch_size)
        if lost:  # entries trimmed unread: compare everything instead
            log.warning("change events were trimmed during the re-embed; comparing the collections whole")
            done += compare_all(transfer, state.batch_size)
        state.cursors, state.caught_up = cursors, state.caught_up + done
        self._save(cp, state)
        return done + len(found)

    def _settle(self, cp: Checkpoint, state: ReembedState, transfer: Transfer) -> None:
        after = AfterSwitch(transfer, state.batch_size)
        until_ms = state.switched_ms + int((self.ctx.settings.collection_refresh_s + SETTLE_GRACE_S) * 1000)
        while True:
            last = _now_ms() >= until_ms
            self._step(cp)
            found, cursors, lost = events.read_changes(self.ctx.redis, self.ctx.keys, state.cursors)
            if lost:
                log.warning("change events were trimmed after the switch; writes of that moment may be missing")
            state.caught_up += after.apply(found)
            state.cursors = cursors
            if last:
                break
            self._save(cp, state)
            self._pause_if_due()
            time.sleep(PASS_INTERVAL_S)
        state.phase, state.finished_ms = "done", _now_ms()
        cp.save(None, keep_old=state.source)
        self._notify(state)
        log.info("re-embed done", source=state.source, target=state.target, copied=state.copied)

    # -- checkpoints

    def _step(self, cp: Checkpoint) -> None:
        cp.check()

    def _pause_if_due(self) -> None:
        """Stop at the time budget, right after a checkpoint (so every run makes progress)."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise Paused()

    def _save(self, cp: Checkpoint, state: ReembedState) -> None:
        cp.save(state)
        self._notify(state)

    def _notify(self, state: ReembedState) -> None:
        if self.progress is not None:
            self.progress(state)

    def _report(self, state: ReembedState, *, continued: bool = False) -> ReembedReport:
        return ReembedReport(
            phase=state.phase,
            source=state.source,
            target=state.target,
            copied=state.copied,
            caught_up=state.caught_up,
            seconds=round(time.monotonic() - self.started, 3),
            continued=continued,
        )


def _now_ms() -> int:
    return int(time.time() * 1000)
