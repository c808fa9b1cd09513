"""Celery tasks: thin shells that validate ids, bind log context and call the core."""

from __future__ import annotations

from typing import Any

import structlog
from celery import Celery
from pydantic import ValidationError

from producer.core import describe_errors
from schemas.reflection import ReflectArgs
from worker.errors import InvalidTaskArguments
from worker.runtime import get_runtime

log = structlog.get_logger("reverie.tasks")
REFLECT = "reverie.reflect"


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
            result = get_runtime(settings).reflector.run(parsed)
            log.info(
                "reflection finished",
                outcome=result.outcome,
                inserted=result.inserted,
                updated=result.updated,
            )
            return result.model_dump()
