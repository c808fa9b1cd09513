"""Celery tasks: thin shells that validate ids, bind log context and call the core."""

from __future__ import annotations

import time
from typing import Any

import structlog
from celery import Celery
from celery.exceptions import Ignore
from pydantic import ValidationError

from producer.core import describe_errors
from schemas.reflection import ReflectArgs
from worker.errors import InvalidTaskArguments
from worker.metrics import observe_reflection
from worker.runtime import get_runtime

log = structlog.get_logger("reverie.tasks")
REFLECT = "reverie.reflect"
CONSOLIDATE = "reverie.consolidate"
OPTIMIZE_PROMPT = "reverie.optimize_prompt"

CUSTOM_STATES = {"superseded": "SUPERSEDED", "rolled_back": "ROLLED_BACK", "deferred": "DEFERRED"}
"""Outcomes that did no work. They end in their own Celery state instead of SUCCESS, so Flower
(state column, ``/api/tasks?state=SUPERSEDED``) and the result backend tell them apart from
commits: the task stores the state with the summary as its meta, sends a ``task-<outcome>``
event (Flower turns an unknown event type into that state) and raises ``Ignore`` so that no
``task-succeeded`` event overrides it; the message is still acknowledged. Trade-off: these
states are not in ``celery.states.READY_STATES``, so ``AsyncResult.get()`` would wait forever
on them; read ``AsyncResult.state``/``.info`` instead (nothing in Reverie waits on results)."""


def parse_reflect_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> ReflectArgs:
    """Accept (user_id, thread_id, generation) positionally or by name; name what is wrong."""
    fields = ("user_id", "thread_id", "generation")
    if len(args) > len(fields):
        raise InvalidTaskArguments(f"expected at most {len(fields)} positional arguments, got {len(args)}")
    data = dict(zip(fields, args, strict=False)) | kwargs
    try:
        return ReflectArgs.model_validate(data)
    except ValidationError as e:
        raise InvalidTaskArguments("invalid reflect arguments: " + "; ".join(describe_errors(e))) from None


def register(app: Celery) -> None:
    settings = app.reverie_settings  # type: ignore[attr-defined]

    @app.task(name=REFLECT, bind=True, ignore_result=False, shared=False)
    def reflect(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Reflect one thread: ids in, counts out. Never carries conversation text."""
        parsed = parse_reflect_args(args, kwargs)
        with structlog.contextvars.bound_contextvars(
            user_id=parsed.user_id,
            thread_id=parsed.thread_id,
            generation=parsed.generation,
            task_id=self.request.id,
        ):
            started = time.monotonic()
            try:
                result = get_runtime(settings).reflector.run(parsed)
            except Exception:
                observe_reflection("failed", started)
                raise
            observe_reflection(result.outcome, started)
            log.info(
                "reflection finished",
                outcome=result.outcome,
                inserted=result.inserted,
                updated=result.updated,
            )
            summary = result.model_dump()
            state = CUSTOM_STATES.get(result.outcome)
            if state is not None and self.request.id and not self.request.is_eager:
                self.update_state(state=state, meta=summary)
                self.send_event(f"task-{result.outcome}", result=summary)
                raise Ignore()
            return summary

    @app.task(name=CONSOLIDATE, bind=True, ignore_result=False)
    def consolidate(self: Any, flush: bool | None = None, user_id: str | None = None) -> dict[str, Any]:
        """Batch consolidation (Celery beat). Progress is task state PROGRESS with counts (Flower)."""
        from schemas.ids import check_id
        from worker.consolidation import consolidate_all, consolidate_user

        runtime = get_runtime(settings)
        if user_id is not None:
            report = consolidate_user(runtime, check_id(user_id))
            return report.counts()

        def progress(counts: dict[str, int]) -> None:
            if self.request.id:  # not when called eagerly in-process
                self.update_state(state="PROGRESS", meta=counts)

        do_flush = settings.consolidate_flush if flush is None else bool(flush)
        # end well inside task_time_limit (= lease_s); users not reached stay marked
        budget_s = max(settings.lease_s * 0.8 - 10, 10)
        return consolidate_all(runtime, flush=do_flush, progress=progress, time_budget_s=budget_s).counts()

    @app.task(name=OPTIMIZE_PROMPT, bind=True, ignore_result=False)
    def optimize(self: Any, key: str) -> dict[str, Any]:
        """Procedural memory: improve the prompt of ``key`` from its recorded examples (ids only)."""
        from dataclasses import asdict

        from schemas.ids import check_id
        from worker.procedural import optimize_prompt

        return asdict(optimize_prompt(get_runtime(settings), check_id(key)))
