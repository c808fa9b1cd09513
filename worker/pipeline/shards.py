"""Pure helpers for working across the shards of the coordination state: a fair share of due
threads between shards, and counters summed over the shards' stats hashes."""

from __future__ import annotations

from typing import Any

from producer.text import as_text


def fair_share(lists: list[list[str]], limit: int) -> list[str]:
    """At most ``limit`` items taken round robin from ``lists`` (one from each in turn, in the
    order given): a long list never crowds out a short one."""
    out: list[str] = []
    depth = 0
    while len(out) < limit:
        row = [items[depth] for items in lists if depth < len(items)]
        if not row:
            break
        out.extend(row[: limit - len(out)])
        depth += 1
    return out


def sum_counters(hashes: list[dict[Any, Any]]) -> dict[str, int]:
    """Counter hashes of several shards, summed (fields that are not counters, such as a
    closed shard's ``closed``, are left out)."""
    out: dict[str, int] = {}
    for values in hashes:
        for k, v in values.items():
            try:
                n = int(v)
            except ValueError:
                continue
            out[as_text(k)] = out.get(as_text(k), 0) + n
    return out
