"""Memory profiles: what to extract from a thread and how. Threads are submitted under a
profile name; workers look the profile up here. The default extracts free-text ``Memory``."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from schemas.memory import Memory, MemoryKind

DEFAULT_INSTRUCTIONS = (
    "You maintain long-term memories about the user of a chat application. Read the new "
    "conversation turns and the existing memories. Record durable facts, preferences and "
    "context about the user that will help future conversations. Insert new memories, update "
    "an existing memory when the new turns refine or contradict it, and never duplicate one. "
    "Ignore small talk. If nothing is worth remembering, call no tool."
)


@dataclass(frozen=True)
class Profile:
    """LangMem's memory-manager knobs, named so producers and workers agree."""

    name: str
    schemas: tuple[type[BaseModel], ...] = (Memory,)
    instructions: str = DEFAULT_INSTRUCTIONS
    enable_inserts: bool = True
    enable_updates: bool = True
    enable_deletes: bool = False
    kind: str = MemoryKind.SEMANTIC
    existing_limit: int = 20


_REGISTRY: dict[str, Profile] = {"default": Profile(name="default")}


def register(profile: Profile) -> Profile:
    _REGISTRY[profile.name] = profile
    return profile


def get_profile(name: str) -> Profile:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; known: {sorted(_REGISTRY)}") from None


def profile_names() -> frozenset[str]:
    return frozenset(_REGISTRY)
