"""Celery tasks: thin shells that validate ids, bind log context and call the core.

The task functions are defined once, here, and ``register`` binds these same functions to each
app ``create_app`` builds, so any number of apps (tests, bench, the demo) share one definition
and Celery sees no duplicate. Settings come from the app the task runs on.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

import structlog
from celery import Celery, Task
from celery.exceptions import Ignore
from pydantic import ValidationError

from producer.connect import REDIS_ERRORS
from producer.core import describe_errors
from schemas.ids import check_id
from schemas.reflection import ReflectArgs
from schemas.settings import Settings
from schemas.webhooks import DeliverArgs
from worker.errors import InvalidTaskArguments, ReverieError
from worker.observability.logs import get_logger
from worker.observability.metrics import observe_reflection
from worker.pipeline.histograms import REFLECTION, observations
from worker.pipeline.reflection import ReflectionFailed
from worker.runtime import get_runtime

log = get_logger("reverie.tasks")
REFLECT = "reverie.reflect"
CONSOLIDATE = "reverie.consolidate"
OPTIMIZE_PROMPT = "reverie.optimize_prompt"
DELIVER_WEBHOOK = "reverie.deliver_webhook"
REEMBED = "reverie.reembed"

CUSTOM_STATES = {"superseded": "SUPERSEDED", "rolled_back": "ROLLED_BACK", "deferred": "DEFERRED"}
"""Outcomes that did no work. They end in their own state instead of SUCCESS, so Flower (state
column, search ``state:SUPERSEDED``) tells them apart from commits: the task sends a
``task-<outcome>`` event (Flower turns an unknown event type into that state) and raises
``Ignore``, so that no ``task-succeeded`` event overrides it and no result is stored; the message
is still acknowledged. Commits and failures are stored, for ``REVERIE_RESULT_TTL_S``."""

EXPECTED_FAILURES = (ReflectionFailed, InvalidTaskArguments)
"""Failures Reverie has already logged (one line, ids only): Celery records the FAILURE state
but does not log them again with a traceback (``Task.throws``)."""


def _settings(task: Task) -> Settings:
    return task.app.reverie_settings  # type: ignore[attr-defined,no-any-return]


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


def reflect(self: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Reflect one thread: ids in, counts out. Never carries conversation text."""
    try:
        parsed = parse_reflect_args(args, kwargs)
    except InvalidTaskArguments as e:
        log.warning("reflect task refused", task_id=self.request.id, error=str(e))
        raise
    with structlog.contextvars.bound_contextvars(
        user_id=parsed.user_id, thread_id=parsed.thread_id, generation=parsed.generation, task_id=self.request.id
    ):
        started = time.monotonic()
        runtime = get_runtime(_settings(self))
        try:
            result = runtime.reflector.run(parsed)
        except Exception:
            _observe(runtime, parsed.user_id, "failed", started)
            raise  # logged once by the reflector: a WARNING, or an ERROR with traceback if unexpected
        _observe(runtime, parsed.user_id, result.outcome, started)
        joined = {"siblings": result.siblings} if result.siblings else {}  # thread ids: ids only, never text
        log.info(
            "reflection finished", outcome=result.outcome, inserted=result.inserted, updated=result.updated, **joined
        )
        summary = result.model_dump()
        state = CUSTOM_STATES.get(result.outcome)
        if state is not None and self.request.id and not self.request.is_eager:
            # Flower learns the state from the event; nothing reads a no-work result, so none
            # is stored (a deferral per second would otherwise fill the backend).
            self.send_event(f"task-{result.outcome}", result=summary)
            raise Ignore()
        return summary


def _observe(runtime: Any, user_id: str, outcome: str, started: float) -> None:
    """The reflection's duration: this process's histogram, and the fleet's (Redis)."""
    seconds = time.monotonic() - started
    observe_reflection(outcome, seconds)
    with contextlib.suppress(*REDIS_ERRORS):  # a metric must never fail a reflection
        runtime.coordinator.incr_stats(user_id, **observations(REFLECTION, [seconds], label=outcome))


def consolidate(self: Task, flush: bool | None = None, user_id: str | None = None) -> dict[str, Any]:
    """Batch consolidation (Celery beat). Progress is task state PROGRESS with counts (Flower)."""
    from worker.features.consolidation import consolidate_all, consolidate_user

    settings = _settings(self)
    runtime = get_runtime(settings)
    if user_id is not None:
        return consolidate_user(runtime, check_id(user_id)).counts()

    def progress(counts: dict[str, int]) -> None:
        if self.request.id:  # not when called eagerly in-process
            self.update_state(state="PROGRESS", meta=counts)

    do_flush = settings.consolidate_flush if flush is None else bool(flush)
    # end well inside task_time_limit (= lease_s); users not reached stay marked
    budget_s = max(settings.lease_s * 0.8 - 10, 10)
    return consolidate_all(runtime, flush=do_flush, progress=progress, time_budget_s=budget_s).counts()


def optimize(self: Task, key: str) -> dict[str, Any]:
    """Procedural memory: improve the prompt of ``key`` from its recorded examples (ids only)."""
    from dataclasses import asdict

    from worker.features.procedural import optimize_prompt

    return asdict(optimize_prompt(get_runtime(_settings(self)), check_id(key)))


def parse_deliver_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> DeliverArgs:
    """Keyword arguments only (endpoint, stream, stream_id[, replay]); name what is wrong."""
    if args:
        raise InvalidTaskArguments(f"expected keyword arguments only, got {len(args)} positional")
    try:
        return DeliverArgs.model_validate(kwargs)
    except ValidationError as e:
        raise InvalidTaskArguments("invalid deliver_webhook arguments: " + "; ".join(describe_errors(e))) from None


def deliver_webhook(self: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """POST one change event to one endpoint, signed; retried with backoff by Celery, then
    dead-lettered (``worker.features.webhooks``). Ids in, ids and a status out."""
    from worker.features.webhooks.deliver import deliver

    try:
        parsed = parse_deliver_args(args, kwargs)
    except InvalidTaskArguments as e:
        log.warning("deliver_webhook task refused", task_id=self.request.id, error=str(e))
        raise
    runtime = get_runtime(_settings(self))
    attempt = self.request.retries + 1
    try:
        outcome = deliver(runtime, parsed, attempt)
    except InvalidTaskArguments as e:
        log.warning("deliver_webhook task refused", task_id=self.request.id, error=str(e))
        raise
    if outcome.result == "retry":
        # Celery's retry: a new message due in ``countdown``; the bound is the policy's
        # (webhook_max_attempts), max_retries only backs it up.
        raise self.retry(countdown=outcome.retry_in_s, max_retries=runtime.settings.webhook_max_attempts)
    return outcome.summary()


def reembed(self: Task, **kwargs: Any) -> dict[str, Any]:
    """Re-embed the namespace (``reverie reembed``; ``worker.features.reembed``): the way while a
    worker owns a local-mode Qdrant folder. Names and counts in, names and counts out. Works for
    a time budget inside the task time limit, then sends itself again to continue."""
    from schemas.reembed import ReembedArgs
    from worker.features.reembed import ReembedError
    from worker.features.reembed import task as job

    try:
        args = ReembedArgs.model_validate(kwargs)
    except ValidationError as e:
        error = "invalid reembed arguments: " + "; ".join(describe_errors(e))
        log.warning("reembed task refused", task_id=self.request.id, error=error)
        raise InvalidTaskArguments(error) from None
    settings = _settings(self)

    def progress(meta: dict[str, Any]) -> None:
        if self.request.id and not self.request.is_eager:
            self.update_state(state="PROGRESS", meta=meta)

    runtime = get_runtime(settings)
    try:
        result = job.run_task(runtime, args, budget_s=job.budget_s(runtime.settings), progress=progress)
    except ReembedError as e:
        log.warning("reembed refused", task_id=self.request.id, error=str(e)[:300])
        raise
    if result.get("continued"):
        next_id = f"reembed:{runtime.settings.namespace}:{uuid.uuid4().hex[:8]}"
        self.app.send_task(REEMBED, kwargs=args.model_dump(exclude_defaults=True), task_id=next_id)
        result["next_task_id"] = next_id
    return result


def register(app: Celery) -> None:
    """Bind the task functions above to ``app`` (not shared with other apps)."""
    app.task(reflect, name=REFLECT, bind=True, ignore_result=False, shared=False, throws=EXPECTED_FAILURES)
    app.task(consolidate, name=CONSOLIDATE, bind=True, ignore_result=False, shared=False)
    app.task(optimize, name=OPTIMIZE_PROMPT, bind=True, ignore_result=False, shared=False)
    # No stored result for deliveries (one per event would fill the backend): outcomes are
    # logged, dead letters kept, and Flower sees every attempt through task events. Refused
    # arguments are stored as a FAILURE.
    app.task(
        deliver_webhook,
        name=DELIVER_WEBHOOK,
        bind=True,
        ignore_result=True,
        store_errors_even_if_ignored=True,
        shared=False,
        throws=EXPECTED_FAILURES,
    )
    app.task(reembed, name=REEMBED, bind=True, ignore_result=False, shared=False, throws=(ReverieError,))
