"""Calibrating the offline memory manager's thresholds (and the offline judge's floor) on the
eval scenarios, per embedder, instead of guessing them::

    python -m worker.ops.eval.calibrate            # print the tables and their accuracy
    python -m worker.ops.eval.calibrate --write    # regenerate worker/memory/extraction/thresholds.py

The scenarios label pairs of user statements (a statement is "the source" of an expectation when
it contains every mention of it):

- **same subject**: an expectation with ``same_as`` whose source is in a later session than the
  source of the expectation it names (the fact was restated or changed);
- **distinct**: the sources of two different expectations of one user's state;
- **chit-chat**: statements of ``chitchat`` scenarios that are the source of no expectation,
  against the sources of expectations (facts).

Errors are not equal, so the choice is precision-first. A wrong merge overwrites one fact with
another (history keeps it, but no read shows it), while a missed merge leaves a stale or
duplicate memory that consolidation or a model can still fix: the subject thresholds are those
that merge the most same-subject pairs while merging none of the distinct pairs
(``MAX_FALSE_MERGE``). Dropping a fact as chit-chat loses it, so the chit-chat threshold is the
lowest that drops no fact with ``CHAT_MARGIN`` to spare. Ties take the middle of the plateau.
``held_out`` is a two-fold estimate (tuned on half the scenarios, scored on the other half).
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from producer.memories.embeddings import Embedder, embedder_for
from schemas.messages import BufferedTurn
from worker.memory.extraction.offline import same_subject, user_statements
from worker.memory.extraction.statements import CHITCHAT_PROTOTYPES
from worker.memory.extraction.thresholds import Thresholds
from worker.ops.eval.scenario import Check, Scenario, load_scenarios

EMBEDDERS = ("use-m3", "e5-small", "hash-256")
GRID = [round(0.10 + 0.01 * i, 2) for i in range(90)]  # 0.10 … 0.99
MAX_FALSE_MERGE = 0.0
CHAT_MARGIN = 0.05
THRESHOLDS_PY = Path(__file__).resolve().parents[2] / "memory" / "extraction" / "thresholds.py"
MARK = "# -- generated below "


@dataclass(frozen=True)
class Pairs:
    same: list[tuple[str, str]]
    distinct: list[tuple[str, str]]
    chitchat: list[str]
    facts: list[str]
    judged: list[tuple[str, str]]
    """(expectation text, its source statement): what the offline judge must accept."""


def _mentioned(check: Check, statement: str) -> bool:
    text = statement.casefold()
    return bool(check.mentions) and all(
        any(o.casefold() in text for o in ([m] if isinstance(m, str) else m)) for m in check.mentions
    )


def _user(content: str) -> BufferedTurn:
    return BufferedTurn(role="user", content=content, ts_ms=0)


def pairs_of(scenarios: Sequence[Scenario]) -> Pairs:
    same: list[tuple[str, str]] = []
    distinct: list[tuple[str, str]] = []
    chit: list[str] = []
    facts: list[str] = []
    judged: list[tuple[str, str]] = []
    for scenario in scenarios:
        said = [
            user_statements(
                [
                    BufferedTurn(role="user", content=t.content, ts_ms=0)
                    for turns in s.threads  # what one (joint) reflection of the session reads
                    for t in turns
                    if t.role == "user"
                ]
            )
            for s in scenario.sessions
        ]
        source: dict[tuple[str, str], tuple[int, str]] = {}
        used: set[str] = set()
        for k, session in enumerate(scenario.sessions):
            current: dict[tuple[str, str], tuple[int, str]] = {}
            for e in session.expect:
                found = next((s for s in said[k] if _mentioned(e, s)), None)
                at = (k, found) if found is not None else source.get((e.user, e.same_as or e.key))
                if at is None:
                    continue
                current[(e.user, e.key)] = at
                used.add(at[1])
                if e.text and found is not None:
                    judged.append((e.text, found))
                earlier = source.get((e.user, e.same_as)) if e.same_as else None
                if earlier is not None and found is not None and earlier[0] < k and earlier[1] != found:
                    same.append((earlier[1], found))
            items = sorted(current.items())
            distinct += [
                (a[1], b[1])
                for i, (ka, a) in enumerate(items)
                for kb, b in items[i + 1 :]
                if ka[0] == kb[0] and a[1] != b[1]
            ]
            source.update(current)
        if scenario.category == "chitchat":
            chit += [s for session in said for s in session if s not in used]
        facts += sorted(used)
    return Pairs(same, sorted(set(distinct)), chit, sorted(set(facts)), judged)


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def _middle(values: list[float]) -> float:
    values = sorted(set(values))
    return values[len(values) // 2]


def _balanced(tp: int, p: int, tn: int, n: int) -> float:
    return ((tp / p if p else 1.0) + (tn / n if n else 1.0)) / 2


@dataclass(frozen=True)
class Fit:
    thresholds: Thresholds
    subject_accuracy: float
    chitchat_accuracy: float
    judge_floor: float
    counts: tuple[int, int, int, int]


def fit(embedder: Embedder, pairs: Pairs) -> Fit:
    texts = sorted({t for p in [*pairs.same, *pairs.distinct, *pairs.judged] for t in p} | set(pairs.chitchat))
    texts = sorted(set(texts) | set(pairs.facts) | set(CHITCHAT_PROTOTYPES))
    vectors = dict(zip(texts, embedder.embed(texts), strict=True))

    def sim(a: str, b: str) -> float:
        return _cos(vectors[a], vectors[b])

    same = [(sim(a, b), a, b) for a, b in pairs.same]
    other = [(sim(a, b), a, b) for a, b in pairs.distinct]
    scored = []
    for t_same in GRID:
        for t_lex in (t for t in GRID if t <= t_same):
            t = Thresholds(t_same, t_lex, 1.0)
            tp = sum(same_subject(s, a, b, t) for s, a, b in same)
            fp = sum(same_subject(s, a, b, t) for s, a, b in other)
            if fp <= MAX_FALSE_MERGE * len(other):
                scored.append((tp, t_same, t_lex))
    top = max(tp for tp, _, _ in scored)
    t_same = _middle([ts for tp, ts, _ in scored if tp == top])
    t_lex = _middle([tl for tp, ts, tl in scored if tp == top and ts == t_same])
    chosen = Thresholds(t_same, t_lex, 1.0)
    tn = sum(not same_subject(s, a, b, chosen) for s, a, b in other)
    best = (_balanced(top, len(same), tn, len(other)), t_same, t_lex)
    proto = [vectors[p] for p in CHITCHAT_PROTOTYPES]

    def chat(text: str) -> float:
        return max(_cos(vectors[text], p) for p in proto)

    chit, facts = [chat(s) for s in pairs.chitchat], [chat(s) for s in pairs.facts]
    keep_facts = [t for t in GRID if all(f + CHAT_MARGIN <= t for f in facts)]  # drop no fact
    t_chat = min(keep_facts) if keep_facts else 1.0
    caught = sum(c >= t_chat for c in chit)
    chat_best = (_balanced(caught, len(chit), len(facts), len(facts)), t_chat)
    judged = sorted(sim(a, b) for a, b in pairs.judged)
    floor = math.floor(judged[int(0.05 * (len(judged) - 1))] * 20) / 20 if judged else 0.0
    return Fit(
        Thresholds(best[1], best[2], chat_best[1]),
        best[0],
        chat_best[0],
        floor,
        (len(same), len(other), len(chit), len(facts)),
    )


def _subject_accuracy(embedder: Embedder, pairs: Pairs, t: Thresholds) -> float:
    texts = sorted({x for pair in [*pairs.same, *pairs.distinct] for x in pair})
    vectors = dict(zip(texts, embedder.embed(texts), strict=True)) if texts else {}
    tp = sum(same_subject(_cos(vectors[a], vectors[b]), a, b, t) for a, b in pairs.same)
    tn = sum(not same_subject(_cos(vectors[a], vectors[b]), a, b, t) for a, b in pairs.distinct)
    return _balanced(tp, len(pairs.same), tn, len(pairs.distinct))


def held_out(embedder: Embedder, scenarios: Sequence[Scenario]) -> float:
    """Two-fold: tune on one half of the scenarios, score same/distinct on the other half."""
    folds: tuple[list[Scenario], list[Scenario]] = ([], [])
    for s in scenarios:
        folds[hashlib.blake2b(s.id.encode(), digest_size=1).digest()[0] % 2].append(s)
    scores = [
        _subject_accuracy(embedder, pairs_of(test), fit(embedder, pairs_of(train)).thresholds)
        for train, test in (folds, folds[::-1])
        if train and test
    ]
    return sum(scores) / len(scores) if scores else float("nan")


def render(fits: dict[str, Fit]) -> str:
    lines = [MARK + "-" * (95 - len(MARK)), "OFFLINE: dict[str, Thresholds] = {"]
    for name, f in fits.items():
        t = f.thresholds
        lines.append(
            f'    "{name}": Thresholds(same_subject={t.same_subject}, same_subject_with_term='
            f"{t.same_subject_with_term}, chitchat={t.chitchat}),"
        )
    lines.append("}")
    lines.append(
        "JUDGE_FLOOR: dict[str, float] = {" + ", ".join(f'"{n}": {f.judge_floor}' for n, f in fits.items()) + "}"
    )
    return "\n".join(lines) + "\n"


def regenerated(fits: dict[str, Fit]) -> str:
    text = THRESHOLDS_PY.read_text(encoding="utf-8")
    head, sep, _ = text.partition(MARK)
    if not sep:
        raise SystemExit(f"{THRESHOLDS_PY} lacks the line {MARK!r}")
    return head + render(fits)


HELD_OUT = ("siblings",)
"""Categories never calibrated on: they only test. ``siblings`` (added after the fit) checks the
joint reflection of threads due together with thresholds fitted without it; fitting on it too
would move the use-m3 judge floor from 0.35 to 0.40 and re-score every category."""


def calibration_scenarios() -> list[Scenario]:
    return [s for s in load_scenarios() if s.category not in HELD_OUT]


def fit_all(names: Sequence[str] = EMBEDDERS) -> dict[str, Fit]:
    scenarios = calibration_scenarios()
    pairs = pairs_of(scenarios)
    return {name: fit(embedder_for(name), pairs) for name in names}


def main(argv: list[str]) -> int:
    fits = fit_all()
    for name, f in fits.items():
        same, other, chit, facts = f.counts
        print(f"{name}: {f.thresholds}")
        held = held_out(embedder_for(name), calibration_scenarios())
        print(f"  subject accuracy {f.subject_accuracy:.3f} (held out {held:.3f}; {same} same, {other} distinct pairs)")
        print(f"  chit-chat accuracy {f.chitchat_accuracy:.3f} ({chit} chit-chat, {facts} facts)")
        print(f"  judge floor {f.judge_floor}")
    if argv[1:] == ["--write"]:
        THRESHOLDS_PY.write_text(regenerated(fits), encoding="utf-8")
        print(f"wrote {THRESHOLDS_PY}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
