"""Profiles of eval scenarios: the schemas a scenario names, and the seed article's own."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from schemas.memory import Memory
from schemas.profiles import DEFAULT_INSTRUCTIONS, Profile
from worker.ops.eval.scenario import EvalFormatError, Scenario

if TYPE_CHECKING:
    from worker.memory.manager import MemoryManager


class UserFoodPreference(BaseModel):
    """A food the user likes or dislikes (the seed article's schema)."""

    food_name: str = Field(min_length=1, max_length=100, description="Name of the food.")
    cuisine: str | None = Field(default=None, max_length=100, description="Cuisine, e.g. Japanese, Italian.")
    preference: int = Field(ge=0, le=100, description="0 = hates it, 100 = loves it.")
    description: str | None = Field(default=None, max_length=500, description="Details about the preference.")


class UserLocation(BaseModel):
    """Where the user lives now."""

    city: str = Field(min_length=1, max_length=100, description="City the user lives in.")
    since: str | None = Field(default=None, max_length=50, description="Since when, if said.")


BUILTIN: dict[str, type[BaseModel]] = {
    "Memory": Memory,
    "UserFoodPreference": UserFoodPreference,
    "UserLocation": UserLocation,
}


def schema_named(name: str) -> type[BaseModel]:
    """A built-in eval schema, or ``package.module:Class``."""
    if name in BUILTIN:
        return BUILTIN[name]
    module_name, sep, attr = name.partition(":")
    if not sep:
        raise EvalFormatError(f"schema {name!r}: not built in ({sorted(BUILTIN)}) and not 'module:Class'")
    try:
        value = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise EvalFormatError(f"schema {name!r}: cannot import ({type(e).__name__})") from None
    if not (isinstance(value, type) and issubclass(value, BaseModel)):
        raise EvalFormatError(f"schema {name!r}: not a pydantic model")
    return value


def profile_for(scenario: Scenario) -> Profile:
    spec = scenario.profile
    return Profile(
        name=f"eval-{scenario.id}",
        schemas=tuple(schema_named(s) for s in spec.schemas),
        instructions=spec.instructions or DEFAULT_INSTRUCTIONS,
        enable_inserts=spec.enable_inserts,
        enable_updates=spec.enable_updates,
        enable_deletes=spec.enable_deletes,
        delete_mode=spec.delete_mode,
    )


def manager_for(settings: Any, scenario: Scenario) -> MemoryManager:
    """The public memory manager for a scenario's profile, with the settings' model and embedder."""
    from worker.memory.manager import create_memory_manager

    return create_memory_manager(
        settings.model,
        profile=profile_for(scenario),
        api_base=settings.llm_api_base,
        api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
        timeout_s=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
        validation_retries=settings.validation_retries,
        protocol=settings.llm_protocol,
        embedder=settings.embedding_model,
    )
