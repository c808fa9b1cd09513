"""``reverie eval --locomo PATH``: LoCoMo question answering scored as in the mem0 paper (arXiv
2504.19413). "J" is the share of answers an LLM judge accepts against the gold answer, overall
and per category; the adversarial category 5 is left out, as there.

The dataset is not shipped (CC BY-NC): users pass their own ``locomo10.json``. Each conversation
becomes two Reverie users, one per speaker, fed session by session through the real producer and
worker on a throw-away Reverie (``harness``): session k of every conversation is submitted for
both speakers, and all those commits are awaited before session k+1, so a later statement is
reflected after an earlier one. Then each question is answered by ``settings.model`` from the
top-k memories of both speakers, and judged (``--judge``, default the same model). The pure parts
(format, messages, prompts, verdicts, J) are in ``locomo_protocol``. Nothing here logs
conversation text; the report carries ids and counts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from schemas.settings import Settings
from worker.ops.eval.locomo_protocol import (
    ADVERSARIAL,
    PROFILE,
    QA,
    SIDES,
    Graded,
    Messages,
    Sample,
    Side,
    answer_messages,
    j_scores,
    judge_messages,
    memory_lines,
    parse_verdict,
    questions,
    session_messages,
    speaker_users,
    submit_chunks,
    thread_of,
)

PUBLISHED = {"full context": 72.9, "Mem0": 66.9, "Zep": 66.0, "LangMem": 58.1}
"""Overall J (%) reported in the mem0 paper, every system answering with gpt-4o-mini."""
ANSWER_WORKERS = 8
"""Questions answered and judged at once (LLM calls are I/O; retrieval stays on one thread)."""
Progress = Callable[[str, int, int], None]
"""(phase "ingest" or "answer", done, total)."""


def _no_progress(phase: str, done: int, total: int) -> None:
    pass


@dataclass
class Cost:
    llm_calls: int = 0
    tokens: int = 0

    def add(self, calls: int, tokens: int) -> None:
        self.llm_calls, self.tokens = self.llm_calls + calls, self.tokens + tokens


@dataclass
class LocomoRun:
    """One run of the protocol on a running ``harness`` ``h``: ``run()``, then ``report()``."""

    h: Any
    samples: Sequence[Sample]
    top_k: int
    judge_model: str | None = None
    progress: Progress = _no_progress
    session_timeout_s: float = 300.0
    graded: list[Graded] = field(default_factory=list)
    cost: dict[str, Cost] = field(default_factory=lambda: {p: Cost() for p in ("ingestion", "answering", "judging")})
    seconds: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def users(self) -> list[dict[Side, str]]:
        """The two Reverie users of each conversation, by speaker side."""
        return speaker_users(self.h.run_id, len(self.samples))

    def ingest(self) -> None:
        """Session k of every conversation for both speakers, then wait for all those commits."""
        h, users, total, done = self.h, self.users, sum(len(s.sessions) for s in self.samples), 0
        for k in range(max(len(s.sessions) for s in self.samples)):
            wave: dict[tuple[str, str], str] = {}
            for sample, pair in zip(self.samples, users, strict=True):
                for side in SIDES if k < len(sample.sessions) else ():
                    session = sample.sessions[k]
                    key = (pair[side], thread_of(session))
                    wave[key] = f"{sample.sample_id} session {session.number} speaker {side}"
                    for part in submit_chunks(session_messages(sample, session, side)):
                        if h.producer.submit(*key, part, profile=PROFILE.name).status == "dropped":
                            self.errors.append(f"{wave[key]}: submit dropped (Redis unavailable)")
            finished = h.wait(list(wave), self.session_timeout_s)
            for key, label in wave.items():
                if (result := finished.get(key)) is None or result.outcome != "committed":
                    outcome = f"no commit within {self.session_timeout_s:.0f} s" if result is None else result.outcome
                    self.errors.append(f"{label}: {outcome}")
                self.cost["ingestion"].add(*h.results.cost(key))
            done += len(wave) // 2
            self.progress("ingest", done, total)

    def ask(self, clients: tuple[Any, Any], sample_id: str, index: int, qa: QA, messages: Messages) -> Graded:
        """One question: the answer from the memories, then the judge's verdict on it."""
        from worker.errors import ReverieError
        from worker.memory.llm import Usage

        spent, verdict, error = (Usage(), Usage()), None, None
        try:
            answer = clients[0].complete(messages, None, spent[0]).choices[0].message.content or ""
            asked = judge_messages(qa.question, qa.answer or "", answer.strip())
            verdict = parse_verdict(clients[1].complete(asked, None, spent[1]).choices[0].message.content or "")
        except Exception as e:  # one failed question must not lose the run; ours name no text
            error = f"{sample_id} question {index}: {e if isinstance(e, ReverieError) else type(e).__name__}"
        with self.lock:
            self.errors.extend([error] if error else [])
            for phase, usage in zip(("answering", "judging"), spent, strict=True):
                self.cost[phase].add(usage.llm_calls, usage.prompt_tokens + usage.completion_tokens)
        return Graded(sample_id, index, qa.category, verdict is True, verdict is not None)

    def answer(self) -> None:
        """Every question of categories 1-4, in file order: memories retrieved here, one search
        per speaker; answering and judging on ``ANSWER_WORKERS`` threads."""
        from worker.memory.llm import LLMClient

        settings, store, users = self.h.settings, self.h.runtime.store, self.users
        clients = (LLMClient.from_settings(settings), LLMClient.from_settings(settings, self.judge_model))
        total, done = sum(1 for _ in questions(self.samples)), [0]

        def tick(_: Any) -> None:
            with self.lock:
                done[0] += 1
                self.progress("answer", done[0], total)

        futures = []
        with ThreadPoolExecutor(ANSWER_WORKERS, thread_name_prefix="locomo") as pool:
            for n, i, qa in questions(self.samples):
                sample, pair = self.samples[n], users[n]
                dates = {thread_of(s): s.date for s in sample.sessions if s.date}
                found = [
                    (name, memory_lines(store.search(pair[side], qa.question, limit=self.top_k), dates))
                    for side, name in zip(SIDES, (sample.speaker_a, sample.speaker_b), strict=True)
                ]
                prompt = answer_messages(qa.question, found)
                futures.append(pool.submit(self.ask, clients, sample.sample_id, i, qa, prompt))
                futures[-1].add_done_callback(tick)
        self.graded = [f.result() for f in futures]

    def run(self) -> LocomoRun:
        if self.h.settings.model is None:
            raise ValueError("LoCoMo needs a model (settings.model) for answering and judging")
        started = time.monotonic()
        self.ingest()
        self.seconds["ingest"] = time.monotonic() - started
        self.answer()
        self.seconds["total"] = time.monotonic() - started
        self.seconds["answer"] = self.seconds["total"] - self.seconds["ingest"]
        return self

    def report(self, *, source: str) -> dict[str, Any]:
        """The JSON report: scores, counts and ids, no conversation text. Needs the harness open."""
        h, scores = self.h, j_scores(self.graded)
        memories = sum(len(h.runtime.store.list(u, limit=100_000)) for pair in self.users for u in pair.values())
        meta = {"source": source, "model": h.settings.model, "judge": self.judge_model or h.settings.model}
        meta |= {"extractor": h.runtime.reflector.extractor_for(PROFILE).name, "embedder": h.runtime.embedder.name}
        meta |= {"top_k": self.top_k, "conversations": len(self.samples), "memories": memories, "errors": self.errors}
        meta["seconds"] = {k: round(v, 1) for k, v in self.seconds.items()}
        adversarial = sum(q.category == ADVERSARIAL for s in self.samples for q in s.qa)
        unparsed = sum(not g.parsed for g in self.graded)
        return {
            "v": 1,
            "benchmark": "locomo",
            "protocol": "mem0 paper (arXiv 2504.19413): J by an LLM judge, categories 1-4, category 5 skipped",
            "meta": meta,
            "overall": scores["overall"] | {"skipped_adversarial": adversarial, "unparsed_verdicts": unparsed},
            "categories": scores["categories"],
            "usage": {phase: asdict(cost) for phase, cost in self.cost.items()},
            "published": {"source": "mem0 paper, gpt-4o-mini", "j": {k: v / 100 for k, v in PUBLISHED.items()}},
            "questions": [asdict(g) for g in self.graded],
        }


def run_locomo(
    settings: Settings,
    samples: Sequence[Sample],
    *,
    source: str,
    judge_model: str | None = None,
    top_k: int = 10,
    progress: Progress = _no_progress,
) -> dict[str, Any]:
    """The whole protocol on a throw-away Reverie (``harness``); returns the JSON report."""
    from worker.ops.eval.harness import harness

    with harness(settings, [PROFILE]) as h:
        return LocomoRun(h, samples, top_k, judge_model, progress).run().report(source=source)


def _pct(j: float | None) -> str:
    return "–" if j is None else f"{j * 100:.1f}"


def render(report: dict[str, Any], console: Any) -> None:
    """For people, within 80 columns: J per category beside the published figures, then cost."""
    from rich import box
    from rich.table import Table

    meta, overall = report["meta"], report["overall"]
    console.print(
        f"[bold]reverie eval --locomo[/]: J as in the mem0 paper, {meta['conversations']} conversations\n"
        f"  questions  {overall['questions']} (categories 1-4; {overall['skipped_adversarial']} adversarial skipped)\n"
        f"  model      {meta['model']}\n  judge      {meta['judge']}\n  memory     {meta['extractor']}, "
        f"{meta['embedder']}, {meta['memories']} memories, top {meta['top_k']} per speaker",
        highlight=False,
    )
    ours = Table("category", "n", "J", box=box.SIMPLE_HEAD, show_edge=False, title="this run")
    for name, scores in [*report["categories"].items(), ("overall", overall)]:
        ours.add_row(name, str(scores["questions"]), _pct(scores["j"]), style="bold" if name == "overall" else None)
    theirs = Table("system", "J", box=box.SIMPLE_HEAD, show_edge=False, title="mem0 paper (gpt-4o-mini)")
    for name, value in PUBLISHED.items():
        theirs.add_row(name, f"{value:.1f}")
    theirs.add_row("Reverie (this run)", _pct(overall["j"]), style="bold")  # on the line of our overall
    for column in [*ours.columns[1:], *theirs.columns[1:]]:
        column.justify = "right"
    grid = Table.grid(padding=(0, 6))
    grid.add_row(ours, theirs)
    console.print(grid)
    for phase, used in report["usage"].items():
        console.print(f"  {phase:<11}{used['llm_calls']:>9,} LLM calls {used['tokens']:>13,} tokens", highlight=False)
    took = meta["seconds"]
    console.print(f"  time        ingest {took['ingest']} s, answer and judge {took['answer']} s", highlight=False)
    problems = list(meta["errors"][:20])
    if len(meta["errors"]) > 20:
        problems.append(f"and {len(meta['errors']) - 20} more (see --json)")
    if overall["unparsed_verdicts"]:
        problems.append(f"{overall['unparsed_verdicts']} verdicts unreadable or not given (counted WRONG)")
    for problem in problems:
        console.print(f"[yellow]warning:[/] {problem}", highlight=False)
