"""Scores, computed from observed memory states and a judge. Pure: no Redis, no Qdrant, so the
tests feed it known states and check every figure.

Per session and user, expectations are matched one-to-one to memories (maximum bipartite
matching over "memory passes the check"). Then:

- **precision** = matched memories / memories; **recall** = matched expectations / expectations;
- **update in place** = expectations with ``same_as`` whose matched memory kept the earlier id;
- **stale** = ``absent`` checks that some memory still passes (a contradicted fact is still there);
- **duplicates** = unmatched memories that pass an expectation already matched by another
  memory, over all memories;
- **recall@5 / MRR**: for each question whose answer exists in the final state, the rank of
  that memory in a search with the question.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from schemas.memory import MemoryRecord
from worker.ops.eval.judge import Judge
from worker.ops.eval.scenario import Scenario

Search = Callable[[str, str, int], list[MemoryRecord]]
"""(user_id, question, limit) → memories, best first."""
K = 5


def max_matching(passes: list[list[bool]]) -> dict[int, int]:
    """Maximum bipartite matching of rows (expectations) to columns (memories): row → column."""
    owner: dict[int, int] = {}

    def augment(row: int, seen: set[int]) -> bool:
        for col, ok in enumerate(passes[row]):
            if ok and col not in seen:
                seen.add(col)
                if col not in owner or augment(owner[col], seen):
                    owner[col] = row
                    return True
        return False

    for row in range(len(passes)):
        augment(row, set())
    return {row: col for col, row in owner.items()}


@dataclass
class Counts:
    """Sums a score is computed from (per session, category or overall)."""

    expected: int = 0
    memories: int = 0
    matched: int = 0
    duplicates: int = 0
    same_as: int = 0
    kept_id: int = 0
    absent: int = 0
    stale: int = 0
    questions: int = 0
    answerable: int = 0
    hits_at_k: int = 0
    reciprocal_rank: float = 0.0
    sessions: int = 0
    llm_calls: int = 0
    tokens: int = 0
    seconds: float = 0.0

    def add(self, other: Counts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def scores(self) -> dict[str, float | None]:
        def ratio(a: float, b: float) -> float | None:
            return a / b if b else None

        per = self.sessions or 1
        return {
            "precision": ratio(self.matched, self.memories) if self.memories else (1.0 if self.expected == 0 else None),
            "recall": ratio(self.matched, self.expected),
            "update_in_place": ratio(self.kept_id, self.same_as),
            "stale_rate": ratio(self.stale, self.absent),
            "duplicate_rate": ratio(self.duplicates, self.memories) if self.memories else 0.0,
            "recall_at_5": ratio(self.hits_at_k, self.answerable),
            "mrr": ratio(self.reciprocal_rank, self.answerable),
            "llm_calls_per_session": self.llm_calls / per,
            "tokens_per_session": self.tokens / per,
            "seconds_per_session": self.seconds / per,
        }


@dataclass
class SessionState:
    """What one session left: each (logical) user's memories, and what it cost."""

    memories: dict[str, list[MemoryRecord]]
    llm_calls: int = 0
    tokens: int = 0
    seconds: float = 0.0


@dataclass
class ScenarioScore:
    scenario: str
    category: str
    counts: Counts = field(default_factory=Counts)
    failures: list[str] = field(default_factory=list)
    """Which checks failed, by key (no memory text): what a person reads to see why."""


def score_scenario(
    scenario: Scenario, states: Sequence[SessionState], judge: Judge, search: Search | None, user_ids: dict[str, str]
) -> ScenarioScore:
    """Score one scenario from its per-session states; ``search`` answers the questions."""
    out = ScenarioScore(scenario.id, scenario.category)
    matched_ids: dict[tuple[str, str], str] = {}
    final: dict[tuple[str, str], str] = {}
    for n, (session, state) in enumerate(zip(scenario.sessions, states, strict=True)):
        c = Counts(sessions=1, llm_calls=state.llm_calls, tokens=state.tokens, seconds=state.seconds)
        current: dict[tuple[str, str], str] = {}
        for user in scenario.users:
            memories = state.memories.get(user, [])
            expects = [e for e in session.expect if e.user == user]
            passes = [judge.passes(e, memories) for e in expects]
            pairs = max_matching(passes)
            c.expected += len(expects)
            c.memories += len(memories)
            c.matched += len(pairs)
            taken = set(pairs.values())
            c.duplicates += sum(
                1 for col in range(len(memories)) if col not in taken and any(passes[row][col] for row in pairs)
            )
            for row, e in enumerate(expects):
                col = pairs.get(row)
                if col is not None:
                    current[(user, e.key)] = memories[col].id
                else:
                    out.failures.append(f"session {n + 1}: {user}/{e.key} missing")
                if e.same_as is not None:
                    c.same_as += 1
                    earlier = matched_ids.get((user, e.same_as))
                    if col is not None and earlier is not None and memories[col].id == earlier:
                        c.kept_id += 1
                    else:
                        out.failures.append(f"session {n + 1}: {user}/{e.key} not updated in place")
            extra = len(memories) - len(pairs)
            if extra:
                out.failures.append(
                    f"session {n + 1}: {user} has {extra} unexpected memor{'y' if extra == 1 else 'ies'}"
                )
            for check in (a for a in session.absent if a.user == user):
                c.absent += 1
                if any(judge.passes(check, memories)):
                    c.stale += 1
                    out.failures.append(
                        f"session {n + 1}: {user} still has a stale fact ({check.text or check.mentions})"
                    )
        matched_ids.update(current)
        final = current
        out.counts.add(c)
    if search is not None:
        for q in scenario.questions:
            out.counts.questions += 1
            target = final.get((q.user, q.answer))
            if target is None:
                continue
            out.counts.answerable += 1
            ranked = [m.id for m in search(user_ids[q.user], q.ask, K)]
            if target in ranked:
                out.counts.hits_at_k += 1
                out.counts.reciprocal_rank += 1 / (ranked.index(target) + 1)
            else:
                out.failures.append(f"question {q.ask!r}: {q.answer} not in the top {K}")
    return out


def aggregate(scores: Sequence[ScenarioScore]) -> tuple[dict[str, Counts], Counts]:
    """Counts per category, and overall."""
    by_category: dict[str, Counts] = {}
    total = Counts()
    for s in scores:
        by_category.setdefault(s.category, Counts()).add(s.counts)
        total.add(s.counts)
    return by_category, total
