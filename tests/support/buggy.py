"""A profile whose schema has a bug (its validator raises a non-validation error): the worker
must treat it as unexpected, log it once at ERROR with its traceback, and dead-letter."""

from __future__ import annotations

from pydantic import BaseModel, model_validator

from schemas.profiles import Profile


class Buggy(BaseModel):
    """A schema with a broken validator."""

    content: str

    @model_validator(mode="after")
    def _broken(self) -> Buggy:
        raise RuntimeError("bug in a user schema validator")


buggy_profile = Profile(name="buggy", schemas=(Buggy,), namespace=("buggy", "{user_id}"))
