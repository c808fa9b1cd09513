"""A worker runtime per test (real Redis under the test's prefix, local-mode Qdrant in tmp_path,
``hash-64`` embeddings, a short ``collection_refresh_s``), and helpers that compare collections."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from producer.memories.embeddings import embedder_for
from schemas.settings import Settings
from worker.features.agent_tools import MANAGE, MemoryTools
from worker.features.reembed import Context
from worker.features.reembed.task import context
from worker.runtime import Runtime, build_runtime


@pytest.fixture
def make_runtime(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    made: list[Runtime] = []

    def make(**overrides: Any) -> Runtime:
        base: dict[str, Any] = {
            "redis_url": SecretStr(redis_url),
            "key_prefix": prefix,
            "qdrant_path": tmp_path / "qdrant",
            "embedding_model": "hash-64",
            "collection_refresh_s": 0.2,
        }
        runtime = build_runtime(Settings(**(base | overrides)))
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.close()


def ctx_of(runtime: Runtime) -> Context:
    return context(runtime)


def seed(runtime: Runtime, users: list[str], per_user: int) -> dict[str, list[str]]:
    """Memories written the way agent tools write them (Qdrant, history, change event)."""
    ids: dict[str, list[str]] = {}
    for user in users:
        tools = MemoryTools(runtime, user)
        ids[user] = [
            tools.execute(MANAGE, {"action": "create", "content": f"{user} fact {i}"})["id"] for i in range(per_user)
        ]
    return ids


def points(runtime: Runtime, collection: str) -> dict[Any, tuple[dict[str, Any], list[float]]]:
    """Every point of a collection: id → (payload, vector)."""
    out: dict[Any, tuple[dict[str, Any], list[float]]] = {}
    offset: Any = None
    while True:
        page, offset = runtime.store.client.scroll(collection, limit=256, offset=offset, with_vectors=True)
        out |= {p.id: (dict(p.payload or {}), list(p.vector)) for p in page}  # type: ignore[arg-type]
        if offset is None:
            return out


def assert_mirror(runtime: Runtime, source: str, target: str, model: str) -> None:
    """The target holds exactly the source's points (same ids and payloads), each with a vector of
    ``model`` for its content."""
    old, new = points(runtime, source), points(runtime, target)
    assert set(new) == set(old), f"missing {set(old) - set(new)}, extra {set(new) - set(old)}"
    embedder = embedder_for(model)
    for pid, (payload, vector) in new.items():
        assert payload == old[pid][0], pid
        assert len(vector) == embedder.dims
        expected = embedder.embed([payload["content"]])[0]
        assert max(abs(a - b) for a, b in zip(vector, expected, strict=True)) < 1e-5, pid


def alive_from_history(runtime: Runtime, user: str) -> dict[str, str]:
    """What a user's memories must be, replayed from the history (the record of every commit)."""
    alive: dict[str, str] = {}
    for entry in runtime.history.history(user):
        if entry.op in ("insert", "update"):
            alive[entry.memory_id] = entry.new_content or ""
        else:
            alive.pop(entry.memory_id, None)
    return alive


def collections(runtime: Runtime) -> set[str]:
    return {c.name for c in runtime.store.client.get_collections().collections}


def alias_target(runtime: Runtime) -> str | None:
    assert runtime.store.live is not None
    return runtime.store.live.target()
