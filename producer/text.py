"""Redis replies as text: a client made without ``decode_responses`` answers bytes, one made
with it answers str; every reader of ids and fields takes either."""

from __future__ import annotations


def as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
