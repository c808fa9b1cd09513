"""The shard layout a deployment uses, recorded once in Redis (``p:layout``, e.g.
``shards=16 tags=1``) by the first process that writes there, and checked by every process before
its first write, so no process writes buffered turns where nothing reads them.

- A producer (and the read client) **follows** the record: the record is what the workers read,
  so a chat server started with another ``REVERIE_SHARDS`` still writes where turns are reflected
  (a warning names the difference). It also follows a live ``reverie reshard``: a submit to a
  shard the reshard has closed is refused by the SUBMIT script, the producer reads the record
  again and resends to the new shard.
- A worker, dispatcher or CLI **refuses** a record other than its own (``LayoutMismatch``, naming
  both layouts and what to do).

With no record yet, the first writer records its own layout; a sharded layout is refused if
unsharded state (``p:due_ss``, ``p:inflight_ss``, ``p:dlq``) is already there (a deployment from
before sharding): ``reverie reshard`` moves it. One round trip (``GET`` and those ``EXISTS``,
pipelined) per process, plus a ``SET NX`` the very first time.
"""

from __future__ import annotations

from typing import Any

from producer.errors import LayoutMismatch
from producer.keys import Keys

RESHARD_HINT = (
    "start it with REVERIE_SHARDS={shards}, or change the deployment's shard count with "
    "`reverie reshard {wanted}` (it moves buffered turns, due times and dead letters; "
    'README "Redis Cluster")'
)


def describe(layout: str) -> str:
    fields = dict(part.split("=", 1) for part in layout.split())
    tags = "hash-tagged" if fields.get("tags") == "1" else "unsharded key names"
    return f"{fields.get('shards', '?')} shard(s), {tags}"


def legacy_keys(keys: Keys) -> list[str]:
    """Shard-wide keys of the unsharded layout, checked before a sharded layout is first recorded."""
    if not keys.tagged:
        return []
    old = Keys(keys.prefix).shard(0)
    return [old.due_ss, old.inflight_ss, old.dlq]


def _s(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def decide(keys: Keys, recorded: Any, legacy: list[Any], where: str) -> str | None:
    """The recorded layout, or None when there is none and ``keys``' layout may be recorded."""
    text = _s(recorded)
    if text:
        return text
    if any(int(n) for n in legacy):
        raise LayoutMismatch(
            f"Redis at {where} holds unsharded Reverie state (prefix {keys.prefix!r}) and no layout record; "
            f"this process uses {describe(keys.layout)}. Move the state first: `reverie reshard {keys.shards}`"
        )
    return None


def refuse(keys: Keys, recorded: str, where: str) -> LayoutMismatch:
    """The error of a process whose layout is not the recorded one (workers, dispatchers, CLI)."""
    old = dict(part.split("=", 1) for part in recorded.split())
    return LayoutMismatch(
        f"Redis at {where} holds Reverie state (prefix {keys.prefix!r}) laid out as {describe(recorded)}, "
        f"but this process uses {describe(keys.layout)}: "
        + RESHARD_HINT.format(shards=old.get("shards", "?"), wanted=keys.shards)
    )


def followable(keys: Keys, recorded: str, cluster: bool) -> Keys:
    """``keys`` for the recorded layout (a producer follows it); on Redis Cluster only a
    hash-tagged layout can be followed."""
    followed = keys.like(recorded)
    if cluster and not followed.tagged:
        raise LayoutMismatch(f"the recorded layout ({describe(recorded)}) has no hash tags: it cannot run on a cluster")
    return followed


def resolve(client: Any, keys: Keys, *, where: str, write: bool = True) -> str:
    """The deployment's layout (sync client): the record, else ``keys``' own (recorded if ``write``)."""
    pipe = client.pipeline(transaction=False)
    pipe.get(keys.layout_key)
    for key in legacy_keys(keys):
        pipe.exists(key)
    recorded, *legacy = pipe.execute()
    found = decide(keys, recorded, legacy, where)
    if found is not None:
        return found
    if not write:
        return keys.layout
    if client.set(keys.layout_key, keys.layout, nx=True):  # SET NX, then GET: Redis 6.2 has no NX GET
        return keys.layout
    return _s(client.get(keys.layout_key)) or keys.layout


async def resolve_async(client: Any, keys: Keys, *, where: str, write: bool = True) -> str:
    """Async form of ``resolve``."""
    pipe = client.pipeline(transaction=False)
    pipe.get(keys.layout_key)
    for key in legacy_keys(keys):
        pipe.exists(key)
    recorded, *legacy = await pipe.execute()
    found = decide(keys, recorded, legacy, where)
    if found is not None:
        return found
    if not write:
        return keys.layout
    if await client.set(keys.layout_key, keys.layout, nx=True):
        return keys.layout
    return _s(await client.get(keys.layout_key)) or keys.layout
