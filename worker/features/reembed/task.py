"""The ``reverie.reembed`` task's core: the CLI's work inside a worker (the way to re-embed while a
worker owns a local-mode Qdrant folder). It works for a time budget, then the task sends itself
again to continue from the checkpoint (prefork pools enforce a time limit; any pool may restart)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from schemas.reembed import ReembedArgs, ReembedReport, ReembedState
from schemas.settings import Settings
from worker.features.reembed.admin import abort, drop_old, kept_old
from worker.features.reembed.run import Context, Reembed
from worker.runtime import Runtime


def budget_s(settings: Settings) -> float:
    """How long one task works before it continues in a new one: well inside the task time limit
    (``lease_s``, enforced by prefork pools)."""
    return max(settings.lease_s * 0.8 - 10, 10)


def context(runtime: Runtime) -> Context:
    return Context(runtime.store, runtime.redis, runtime.coordinator.keys, runtime.settings)


def progress_meta(state: ReembedState) -> dict[str, Any]:
    """What the task shows as PROGRESS (Flower) and the CLI's bar: counts and names only."""
    return {
        "phase": state.phase,
        "copied": state.copied,
        "total": state.total,
        "caught_up": state.caught_up,
        "target": state.target,
    }


def run_task(
    runtime: Runtime,
    args: ReembedArgs,
    *,
    budget_s: float | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run one request; returns a JSON-able result (a report, or the dry run's estimate)."""
    ctx = context(runtime)
    if progress is not None:
        progress({"phase": "starting"})  # tells the CLI a worker took the task
    if args.abort:
        return abort(ctx).model_dump()
    if args.drop_old:
        if args.dry_run:
            return ReembedReport(phase="done", dropped=kept_old(ctx)).model_dump()
        return drop_old(ctx).model_dump()
    last = [0.0]

    def throttled(state: ReembedState) -> None:
        now = time.monotonic()
        if progress is not None and (now - last[0] >= 1.0 or state.phase == "done"):
            last[0] = now
            progress(progress_meta(state))

    job = Reembed(ctx, progress=throttled, budget_s=budget_s)
    if args.dry_run:
        return job.estimate(args).model_dump()
    return job.run(args).model_dump()
