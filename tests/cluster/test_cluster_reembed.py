"""Re-embedding with the coordination state on the 16-shard cluster: the lock and checkpoint
script stay in one slot (the namespace is their hash tag) and the catch-up reads every shard's
events stream, so a write during the copy, on any shard, reaches the new collection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from schemas.reembed import ReembedArgs
from schemas.settings import Settings
from tests.cluster.conftest import cluster_settings
from tests.conftest import uid
from tests.worker.features.reembed.conftest import alias_target, assert_mirror, ctx_of, seed
from worker.features.agent_tools import MANAGE, MemoryTools
from worker.features.reembed import Reembed
from worker.runtime import build_runtime


def test_a_reembed_on_a_cluster_copies_every_shard_and_catches_up_writes(
    cluster: Any, cprefix: str, redis_url: str, tmp_path: Path
) -> None:
    """Users on several shards; a memory written on another shard in the middle of the copy is
    in the new collection afterwards, with every other memory, and the alias switched."""
    settings = Settings(
        **cluster_settings(cluster, redis_url),
        key_prefix=cprefix,
        qdrant_path=tmp_path / "qdrant",
        embedding_model="hash-64",
        collection_refresh_s=0.2,
    )
    rt = build_runtime(settings)
    try:
        keys = rt.coordinator.keys
        users: dict[int, str] = {}
        while len(users) < 5:
            user = uid("u")
            users.setdefault(keys.shard_of(user), user)
        early, late = list(users.values())[:4], list(users.values())[4]
        seed(rt, early, 3)
        written: list[str] = []

        def write_during_copy(state: Any) -> None:
            if state.phase == "copy" and not written:
                created = MemoryTools(rt, late).execute(MANAGE, {"action": "create", "content": "late fact"})
                written.append(created["id"])

        report = Reembed(ctx_of(rt), progress=write_during_copy).run(ReembedArgs(to="hash-128", batch_size=4))
        assert report.phase == "done" and written
        assert alias_target(rt) == "memories__hash-128"
        assert_mirror(rt, "memories__hash-64", "memories__hash-128", "hash-128")
        assert [m.id for m in rt.store.list(late)] == written
        assert sum(len(rt.store.list(u)) for u in early) == 12
    finally:
        rt.close()
