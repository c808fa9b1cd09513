"""The atomic switch: one ``update_collection_aliases`` call deletes the live alias and creates it
on the new collection (Qdrant applies the operations of one call together; local mode too), so
a reader resolves either the old collection or the new one, never none."""

from __future__ import annotations

from qdrant_client import models as qm

from worker.memory.store import MemoryStore


def switch_alias(store: MemoryStore, alias: str, target: str) -> None:
    assert store.live is not None
    ops: list[qm.CreateAliasOperation | qm.DeleteAliasOperation] = []
    if store.live.target() is not None:  # the server refuses to delete an alias that does not exist
        ops.append(qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias)))
    ops.append(qm.CreateAliasOperation(create_alias=qm.CreateAlias(collection_name=target, alias_name=alias)))
    store._call(store.client.update_collection_aliases, change_aliases_operations=ops)
