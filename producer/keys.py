"""The Redis keys a chat server touches, in one place (the worker adds its own in
``worker.pipeline.keys``, on top of these). Tests and the CLI import them too.

Layout (``p`` is the key prefix, ``u``/``t`` user and thread ids, which cannot contain ``:``):

- ``p:thread:u:t``   hash   gen, first_ms, last_ms, profile, dispatched_gen, attempts, and the
  last reflection's ``last_*`` fields (written by the worker when a reflection ends)
- ``p:buf:u:t``      list   buffered turns (JSON), oldest first; trimmed only after commit
- ``p:msgids:u:t``   set    message ids already accepted (idempotent append), with a TTL
- ``p:threads:u``    set    thread ids of user ``u`` (``status(u)`` lists them); 8-day TTL from the last submit
- ``p:due_ss``       zset   ``u:t`` → due time (ms); trailing-edge debounce
- ``p:inflight_ss``  zset   ``u:t`` → deadline (ms) of a claimed reflection (written by the worker,
  read by ``status``)
- ``p:dlq``          hash   ``u:t`` → dead letter JSON (a dead-lettered thread buffers, not schedules)
- ``p:stats``        hash   counters (and ``closed`` while ``reverie reshard`` moves the shard away)
- ``p:prompt:k``     hash   current procedural prompt of key ``k`` (``version``, ``json``)
- ``p:prompthist:k`` list   previous prompt versions of ``k`` (JSON), newest last; capped
- ``p:promptex:k``   list   conversations + feedback recorded for the optimizer of ``k``; capped
- ``p:layout``       string the shard layout every process checks (``shards=S tags=0|1``)

**Shards.** The coordination state is split into ``S`` shards (``REVERIE_SHARDS``); a user's shard
is ``shard_of(user_id, S)``, a CRC-32 of the id. With ``S = 1`` on a single Redis (the default)
the names are exactly the ones above. Otherwise (``S > 1``, or any ``S`` on Redis Cluster) every
key of shard ``n`` carries the shard's hash tag after the prefix, ``p:{n/S.k}:…`` (``p:{3/16.43}:buf:u:t``,
``p:{3/16.43}:due_ss``), so every key one Lua call touches (a user's thread, buffer, msg-ids, lease,
history… and that shard's due, in-flight, dead-letter, stats, changed and events keys) is in one
cluster slot. ``k`` is the smallest number that puts the tag's slot near the middle of the shard's
``1/S`` of the slot range, so the shards spread evenly over primaries that own equal slot ranges.
Prompt keys are not per user: tagged, they are ``p:prompt:{k}``, ``p:prompthist:{k}`` and
``p:promptex:{k}`` (the three of one prompt key share a slot). ``p:layout`` is never tagged.
"""

from __future__ import annotations

import binascii
import zlib
from functools import lru_cache

SEP = ":"
MAX_SHARDS = 1024
SLOTS = 16384
"""Redis Cluster's hash slots."""


def member(user_id: str, thread_id: str) -> str:
    """Sorted-set member naming a thread."""
    return f"{user_id}{SEP}{thread_id}"


def split_member(value: str | bytes) -> tuple[str, str]:
    """Inverse of ``member``."""
    text = value.decode() if isinstance(value, bytes) else value
    user_id, _, thread_id = text.partition(SEP)
    return user_id, thread_id


def check_shards(shards: object) -> int:
    """The shard count: an integer from 1 to ``MAX_SHARDS``; ``ValueError`` otherwise."""
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"shards: expected an integer from 1 to {MAX_SHARDS}, got {shards!r}")
    return shards


def shard_of(user_id: str, shards: int) -> int:
    """The shard of a user: CRC-32 of the UTF-8 id modulo ``shards``. Stable across processes,
    machines and Python versions (never ``hash()``), so producers and workers agree."""
    return zlib.crc32(user_id.encode()) % shards if shards > 1 else 0


def key_slot(text: str) -> int:
    """Redis Cluster's slot of a key (or a hash tag's text): CRC16-XMODEM modulo 16384."""
    return binascii.crc_hqx(text.encode(), 0) % SLOTS


@lru_cache(maxsize=4 * MAX_SHARDS)
def shard_tag(shard: int, shards: int) -> str:
    """Hash-tag text of shard ``shard`` of ``shards``: ``<shard>/<shards>.<k>`` with the smallest
    ``k`` whose slot lies within a quarter of a share of the middle of the shard's share of the
    slots (about ``2 × shards`` CRCs, once per process and shard). The shard count is part of the
    tag, so two layouts never share a key (``reverie reshard`` moves keys between them)."""
    center = (2 * shard + 1) * SLOTS // (2 * shards)
    half = max(SLOTS // (4 * shards), 1)
    k = 0
    while abs(key_slot(f"{shard}/{shards}.{k}") - center) >= half:
        k += 1
    return f"{shard}/{shards}.{k}"


class ShardKeys:
    """The keys one shard holds for everyone in it (what was global before sharding)."""

    __slots__ = ("base", "index")

    def __init__(self, base: str, index: int) -> None:
        self.base = base
        """``p`` unsharded, ``p:{n/S.k}`` tagged."""
        self.index = index

    @property
    def due_ss(self) -> str:
        return f"{self.base}:due_ss"

    @property
    def inflight_ss(self) -> str:
        return f"{self.base}:inflight_ss"

    @property
    def dlq(self) -> str:
        return f"{self.base}:dlq"

    @property
    def stats(self) -> str:
        return f"{self.base}:stats"


class ShardedKeyError(LookupError):
    """A shard-wide key was asked for without saying which shard (there are several)."""


class Keys:
    """Key builder bound to one prefix and shard layout (tests isolate themselves with their own
    prefix). ``shards`` > 1 implies hash tags; ``tagged=True`` with one shard is Redis Cluster's."""

    __slots__ = ("prefix", "shards", "tagged")
    SHARD_KEYS: type[ShardKeys] = ShardKeys

    def __init__(self, prefix: str = "reverie", shards: int = 1, *, tagged: bool | None = None) -> None:
        self.prefix = prefix
        self.shards = check_shards(shards)
        self.tagged = shards > 1 if tagged is None else bool(tagged)
        if shards > 1 and not self.tagged:
            raise ValueError("shards: more than one shard needs hash-tagged keys")

    @property
    def layout(self) -> str:
        """What ``p:layout`` records for this key layout."""
        return f"shards={self.shards} tags={int(self.tagged)}"

    def like(self, layout: str) -> Keys:
        """The same kind of key builder on the same prefix, for a recorded ``layout``."""
        fields = dict(part.split("=", 1) for part in layout.split())
        return type(self)(self.prefix, int(fields["shards"]), tagged=fields["tags"] == "1")

    # -- shards -----------------------------------------------------------------------------
    def shard_of(self, user_id: str) -> int:
        return shard_of(user_id, self.shards)

    def base(self, shard: int) -> str:
        if not self.tagged:
            return self.prefix
        return f"{self.prefix}{SEP}{{{shard_tag(shard, self.shards)}}}"

    def _user(self, user_id: str) -> str:
        if not self.tagged:
            return self.prefix
        return self.base(shard_of(user_id, self.shards))

    def shard(self, index: int) -> ShardKeys:
        if not 0 <= index < self.shards:
            raise IndexError(f"shard {index} out of range: there are {self.shards}")
        return self.SHARD_KEYS(self.base(index), index)

    def shard_for(self, user_id: str) -> ShardKeys:
        """The keys of the shard that holds ``user_id``."""
        return self.shard(self.shard_of(user_id))

    def all_shards(self) -> list[ShardKeys]:
        return [self.shard(n) for n in range(self.shards)]

    def _only(self) -> ShardKeys:
        if self.shards != 1:
            raise ShardedKeyError(
                f"{self.shards} shards: name the shard (keys.shard(n), keys.shard_for(user_id), keys.all_shards())"
            )
        return self.shard(0)

    # -- per thread and per user --------------------------------------------------------------
    def thread(self, user_id: str, thread_id: str) -> str:
        return f"{self._user(user_id)}:thread:{user_id}:{thread_id}"

    def buffer(self, user_id: str, thread_id: str) -> str:
        return f"{self._user(user_id)}:buf:{user_id}:{thread_id}"

    def msgids(self, user_id: str, thread_id: str) -> str:
        return f"{self._user(user_id)}:msgids:{user_id}:{thread_id}"

    def user_threads(self, user_id: str) -> str:
        return f"{self._user(user_id)}:threads:{user_id}"

    # -- shard-wide (one shard only; else name the shard) ------------------------------------
    @property
    def due_ss(self) -> str:
        return self._only().due_ss

    @property
    def inflight_ss(self) -> str:
        return self._only().inflight_ss

    @property
    def dlq(self) -> str:
        return self._only().dlq

    @property
    def stats(self) -> str:
        return self._only().stats

    # -- global ------------------------------------------------------------------------------
    @property
    def layout_key(self) -> str:
        return f"{self.prefix}:layout"

    def prompt(self, key: str) -> str:
        return f"{self.prefix}:prompt:{self._tag(key)}"

    def prompt_history(self, key: str) -> str:
        return f"{self.prefix}:prompthist:{self._tag(key)}"

    def prompt_examples(self, key: str) -> str:
        return f"{self.prefix}:promptex:{self._tag(key)}"

    def _tag(self, key: str) -> str:
        return f"{{{key}}}" if self.tagged else key
