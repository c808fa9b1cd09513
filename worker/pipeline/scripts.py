"""The pipeline's Lua scripts (``worker/pipeline/lua/*.lua``): claiming due threads, the per-user
lease, the snapshot and the prepare/finalize commit protocol, rescheduling and dead letters."""

from __future__ import annotations

from typing import Any

from producer.scripts import ScriptSet


class PipelineScripts(ScriptSet):
    PACKAGE = "worker.pipeline"
    NAMES = (
        "due_candidates",
        "claim",
        "requeue_expired",
        "lease_acquire",
        "lease_renew",
        "lease_release",
        "snapshot",
        "prepare",
        "finalize",
        "release",
        "reschedule",
        "replay_dead",
        "flush_due",
    )

    due_candidates: Any
    claim: Any
    requeue_expired: Any
    lease_acquire: Any
    lease_renew: Any
    lease_release: Any
    snapshot: Any
    prepare: Any
    finalize: Any
    release: Any
    reschedule: Any
    replay_dead: Any
    flush_due: Any
