"""Memory profiles: what to extract from a thread and how, named so producers and workers agree.

A profile is plain data (pydantic schemas, instructions, flags), so this module imports
pydantic only: chat servers load the same ``REVERIE_PROFILES`` spec to validate profile names,
workers load it to extract. Profiles are registered by import path, e.g.
``REVERIE_PROFILES="myapp.memory:food_profile,myapp.memory:episodes"``; adding a schema never
touches worker code. The built-in ``default`` profile extracts free-text ``Memory``.
"""

from __future__ import annotations

import importlib
import re
import threading
from dataclasses import dataclass
from string import Formatter
from typing import Literal

from pydantic import BaseModel

from schemas.ids import check_id
from schemas.memory import Memory, MemoryKind

DEFAULT_INSTRUCTIONS = (
    "You maintain long-term memories about the user of a chat application. Read the new "
    "conversation turns and the existing memories. Record durable facts, preferences and "
    "context about the user that will help future conversations. Insert new memories, update "
    "an existing memory when the new turns refine or contradict it, and never duplicate one. "
    "Ignore small talk. If nothing is worth remembering, call no tool."
)
PLACEHOLDERS = frozenset({"user_id", "thread_id"})
_SPEC_ITEM = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class ProfileError(LookupError):
    """A profile is unknown, malformed, or its import path cannot be loaded."""


@dataclass(frozen=True)
class Profile:
    """LangMem's memory-manager and store-manager knobs.

    ``namespace`` is a template like ``("chat", "{user_id}")``: formatted per reflection and
    stored in each memory's payload; retrieval only shows memories of the same namespace (and
    always of the same user: the user filter is applied underneath regardless).
    """

    name: str
    schemas: tuple[type[BaseModel], ...] = (Memory,)
    instructions: str = DEFAULT_INSTRUCTIONS
    enable_inserts: bool = True
    enable_updates: bool = True
    enable_deletes: bool = False
    delete_mode: Literal["physical", "tombstone"] = "physical"
    kind: str = MemoryKind.SEMANTIC
    namespace: tuple[str, ...] = ("memories", "{user_id}")
    model: str | None = None
    """litellm model for this profile; ``None`` uses ``REVERIE_MODEL``."""
    existing_limit: int = 20
    """At most this many existing memories are shown to the model (also capped by settings)."""
    token_budget: int = 2000
    """...and at most about this many tokens of them."""
    episodic: bool = False
    """Also write one ``episode`` memory per reflection (what happened, outcome)."""
    lexical_scan_limit: int = 500
    """Memories scanned for lexical/entity matches with the conversation (always shown)."""

    def __post_init__(self) -> None:
        check_id(self.name)
        if not self.schemas:
            raise ProfileError(f"profile {self.name!r}: needs at least one schema")
        for schema in self.schemas:
            if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
                raise ProfileError(f"profile {self.name!r}: {schema!r} is not a pydantic model class")
        names = [s.__name__ for s in self.schemas]
        if len(set(names)) != len(names):
            raise ProfileError(f"profile {self.name!r}: schema names must be unique, got {names}")
        if not self.namespace:
            raise ProfileError(f"profile {self.name!r}: namespace must not be empty")
        for part in self.namespace:
            used = {f for _, f, _, _ in Formatter().parse(part) if f is not None}
            if used - PLACEHOLDERS:
                raise ProfileError(
                    f"profile {self.name!r}: namespace placeholders {sorted(used - PLACEHOLDERS)} are unknown; "
                    f"allowed: {sorted(PLACEHOLDERS)}"
                )
        if self.existing_limit < 0 or self.token_budget < 0 or self.lexical_scan_limit < 0:
            raise ProfileError(f"profile {self.name!r}: limits must not be negative")

    def format_namespace(self, user_id: str, thread_id: str = "") -> tuple[str, ...]:
        """``("chat", "{user_id}")`` → ``("chat", "alice")``."""
        return tuple(part.format(user_id=user_id, thread_id=thread_id) for part in self.namespace)


def namespace_key(parts: tuple[str, ...] | list[str]) -> str:
    """The payload value retrieval filters on: parts joined by ``/``."""
    return "/".join(parts)


DEFAULT = Profile(name="default")
_lock = threading.Lock()
_REGISTRY: dict[str, Profile] = {"default": DEFAULT}


def register(profile: Profile) -> Profile:
    """Add (or replace) a profile in this process's registry."""
    if not isinstance(profile, Profile):
        raise ProfileError(f"expected a Profile, got {type(profile).__name__}")
    with _lock:
        _REGISTRY[profile.name] = profile
    return profile


def get_profile(name: str) -> Profile:
    """The registered profile, or ``ProfileError`` naming the known ones."""
    with _lock:
        found = _REGISTRY.get(name)
        known = sorted(_REGISTRY)
    if found is None:
        raise ProfileError(f"unknown profile {name!r}; known: {known} (register it via REVERIE_PROFILES)")
    return found


def profile_names() -> frozenset[str]:
    with _lock:
        return frozenset(_REGISTRY)


def import_profile(path: str) -> Profile:
    """``"package.module:attribute"`` → the ``Profile`` it names."""
    path = path.strip()
    if not _SPEC_ITEM.match(path):
        raise ProfileError(f"profile path {path!r} must look like 'package.module:attribute'")
    module_name, attr = path.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ProfileError(f"profile path {path!r}: cannot import {module_name!r} ({e})") from e
    value = getattr(module, attr, None)
    if not isinstance(value, Profile):
        raise ProfileError(f"profile path {path!r}: {attr!r} is not a Profile (got {type(value).__name__})")
    return value


def load_profiles(spec: str | None) -> list[Profile]:
    """Import and register every profile of a comma-separated spec; returns them."""
    if not spec:
        return []
    loaded = [import_profile(item) for item in spec.split(",") if item.strip()]
    names = [p.name for p in loaded]
    if len(set(names)) != len(names):
        raise ProfileError(f"REVERIE_PROFILES names a profile twice: {names}")
    for profile in loaded:
        register(profile)
    return loaded
