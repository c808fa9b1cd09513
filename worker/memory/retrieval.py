"""Which existing memories the extractor sees. Beats LangMem's default (the last message, top 5):

1. **Several queries**: each recent user turn plus the whole window (``retrieval_queries``),
   searched in one batched Qdrant call, merged and de-duplicated by id (best score kept). A user
   with no memories in the namespace (the lexical scan found none) costs no embedding and no
   search; in local mode the search is restricted to the ids the scan found.
2. **Obvious references are always included**: a memory whose entity terms (short string
   fields of its structured data, e.g. ``food_name="ラーメン"``, or capitalised names and
   katakana words in free text) appear verbatim in the conversation is pinned first, whatever its vector score. This
   is substring matching, so it also works for languages without spaces.
3. **Capped** by the profile's ``existing_limit`` and ``token_budget``.

Only the profile's namespace is searched, and the store adds the user filter underneath.
Pure selection (``entity_terms``, ``pinned``, ``cap``) is separate from the two store reads.
"""

from __future__ import annotations

import re

from producer.memories.embeddings import Embedder
from producer.memories.reader import MemoryReader
from schemas.memory import MemoryRecord
from schemas.messages import BufferedTurn
from schemas.profiles import Profile, namespace_key
from worker.memory.planning import episode_id, retrieval_queries

LOCAL_ID_FILTER_MAX = 128
"""Up to this many ids, an id condition is cheaper than the user filter in local mode (its check
builds a tuple of the ids per point, so a long list costs as much as the filter it saves)."""
MAX_TERM_CHARS = 40
MIN_TERM_CHARS = 2
_NAME = re.compile(r"\b[A-Z][\w'-]{2,}")
_KATAKANA = re.compile(r"[\u30A0-\u30FF]{3,}")  # loanword nouns: ラーメン, パスタ, ホッカイドウ
_COMMON = frozenset({"The", "This", "That", "User", "Likes", "Loves", "Prefers", "And", "But"})


def estimate_tokens(text: str) -> int:
    """About 4 ASCII characters per token, one token per other character (CJK): conservative."""
    ascii_chars = sum(1 for ch in text if ord(ch) < 128)
    return ascii_chars // 4 + (len(text) - ascii_chars) + 4


def entity_terms(record: MemoryRecord) -> set[str]:
    """Short identifying strings of a memory: short string fields of its data, else names."""
    terms: set[str] = set()
    for key, value in record.data.items():
        if key != "content" and isinstance(value, str) and MIN_TERM_CHARS <= len(value.strip()) <= MAX_TERM_CHARS:
            terms.add(value.strip())
    if not terms:
        terms.update(m for m in _NAME.findall(record.content) if m not in _COMMON)
        terms.update(_KATAKANA.findall(record.content))
    return terms


def pinned(turns: list[BufferedTurn], candidates: list[MemoryRecord]) -> list[MemoryRecord]:
    """Memories the conversation names, longest matching term first."""
    text = "\n".join(t.content for t in turns).casefold()
    scored = []
    for record in candidates:
        hits = [term for term in entity_terms(record) if term.casefold() in text]
        if hits:
            scored.append((-max(len(h) for h in hits), record.created_at, record.id, record))
    return [item[-1] for item in sorted(scored, key=lambda item: item[:3])]


def cap(first: list[MemoryRecord], rest: list[MemoryRecord], *, limit: int, token_budget: int) -> list[MemoryRecord]:
    """Merge (pinned first), de-duplicate by id, stop at ``limit`` items or ``token_budget``."""
    out: list[MemoryRecord] = []
    seen: set[str] = set()
    spent = 0
    for record in [*first, *rest]:
        if record.id in seen:
            continue
        cost = estimate_tokens(record.content)
        if len(out) >= limit or (out and spent + cost > token_budget):
            break
        seen.add(record.id)
        spent += cost
        out.append(record)
    return out


def select_existing(
    store: MemoryReader,
    embedder: Embedder,
    *,
    user_id: str,
    thread_id: str,
    turns: list[BufferedTurn],
    profile: Profile,
    limit: int,
) -> list[MemoryRecord]:
    """The existing memories to show the extractor for this reflection. For an episodic
    profile the thread's current episode always comes first (so it is updated, not replaced)."""
    parts = profile.format_namespace(user_id, thread_id)
    episode = store.get(user_id, [episode_id(user_id, parts, thread_id)]) if profile.episodic else []
    limit = min(limit, profile.existing_limit)
    if limit == 0:
        return episode
    ns = namespace_key(parts)
    scan = store.list(user_id, ns=ns, limit=profile.lexical_scan_limit) if profile.lexical_scan_limit else []
    ids = stored_ids(scan, profile.lexical_scan_limit)
    queries = [] if ids == [] else retrieval_queries(turns)  # no memories: nothing to embed or search
    by_vector = (
        store.search_vectors(
            user_id,
            embedder.embed_query(queries),
            limit_per_query=limit,
            ns=ns,
            ids=ids if store.local and ids is not None and len(ids) <= LOCAL_ID_FILTER_MAX else None,
        )
        if queries
        else []
    )
    return cap([*episode, *pinned(turns, scan)], by_vector, limit=limit, token_budget=profile.token_budget)


def stored_ids(scan: list[MemoryRecord], scan_limit: int) -> list[str] | None:
    """Every memory id of the namespace if the lexical scan read them all (it came back short of
    its limit), else None. An empty list: the user has none there, and a vector search would
    find nothing. Local mode evaluates a filter point by point in Python for each query, over
    every user's points; an id condition checked first is the cheap part of that (about 2× per
    query here), so there the search names these ids too (the user filter still applies)."""
    return [r.id for r in scan] if scan_limit and len(scan) < scan_limit else None
