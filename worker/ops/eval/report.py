"""The eval's output: one JSON document (``--json``) and the table a person reads, with what
changed against an earlier JSON (``--baseline``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from worker.ops.eval.runner import RunResult
from worker.ops.eval.scenario import CATEGORIES
from worker.ops.eval.scoring import aggregate

COLUMNS = (
    ("precision", "prec", True),
    ("recall", "recall", True),
    ("update_in_place", "inplace", True),
    ("stale_rate", "stale", False),
    ("duplicate_rate", "dupes", False),
    ("recall_at_5", "R@5", True),
    ("mrr", "MRR", True),
)
"""(score, column, higher is better). Cost per session is printed under the table (80 columns)."""


def build(result: RunResult, *, judge: str, scenario_source: str) -> dict[str, Any]:
    by_category, total = aggregate(result.scores)
    counts_of = {s.scenario: s for s in result.scores}
    return {
        "v": 1,
        "meta": {
            "mode": result.mode,
            "extractor": result.extractor,
            "embedder": result.embedder,
            "judge": judge,
            "scenarios": len(result.scores),
            "scenario_source": scenario_source,
            "seconds": round(result.seconds, 1),
            "errors": result.errors,
        },
        "overall": total.scores() | {"scenarios": len(result.scores)},
        "categories": {
            c: by_category[c].scores() | {"scenarios": sum(1 for s in result.scores if s.category == c)}
            for c in CATEGORIES
            if c in by_category
        },
        "scenarios": [
            {"id": sid, "category": s.category, "scores": s.counts.scores(), "failures": s.failures}
            for sid, s in counts_of.items()
        ],
    }


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _delta(now: float | None, before: float | None, better: bool) -> str:
    if now is None or before is None or abs(now - before) < 0.005:
        return ""
    good = (now > before) == better
    return f" [{'green' if good else 'red'}]{now - before:+.2f}[/]"


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"--baseline {path}: not a readable eval JSON ({type(e).__name__})") from None
    if not isinstance(data, dict) or data.get("v") != 1 or "overall" not in data:
        raise ValueError(f"--baseline {path}: not a reverie eval JSON (v1)")
    return data


def _cost(scores: dict[str, Any], mode: str) -> str:
    took = "from the last submit to the commit" if mode == "pipeline" else "in the memory manager"
    return (
        f"{scores['llm_calls_per_session']:.1f} LLM calls, {scores['tokens_per_session']:.0f} tokens, "
        f"{scores['seconds_per_session']:.2f} s {took}"
    )


def render(report: dict[str, Any], console: Console, baseline: dict[str, Any] | None = None) -> None:
    meta = report["meta"]
    console.print(
        f"[bold]reverie eval[/] ({meta['mode']}): {meta['scenarios']} scenarios in {meta['seconds']} s\n"
        f"  extractor  {meta['extractor']}\n  embedder   {meta['embedder']}\n  judge      {meta['judge']}",
        highlight=False,
    )
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), show_edge=False)
    table.add_column("category", no_wrap=True)
    table.add_column("n", justify="right")
    for _, head, _ in COLUMNS:
        table.add_column(head, justify="right", no_wrap=True)
    rows = [(c, s) for c, s in report["categories"].items()] + [("overall", report["overall"])]
    for name, scores in rows:
        before = None
        if baseline is not None:
            before = baseline["overall"] if name == "overall" else baseline.get("categories", {}).get(name)
        cells = [
            _cell(scores.get(key)) + (_delta(scores.get(key), before.get(key), better) if before else "")
            for key, _, better in COLUMNS
        ]
        table.add_row(name, str(scores.get("scenarios", "")), *cells, style="bold" if name == "overall" else None)
    console.print(table)
    console.print(f"per session: {_cost(report['overall'], meta['mode'])}", highlight=False)
    if baseline is not None:
        b = baseline["meta"]
        console.print(f"[dim]vs baseline: {b.get('extractor')}, {b.get('embedder')}, judge {b.get('judge')}[/]")
    for error in meta["errors"]:
        console.print(f"[yellow]warning:[/] {error}", highlight=False)


def render_study(study: dict[str, Any], console: Console) -> None:
    """The retrieval study: dense vs hybrid on the questions, and the search-before-extract query sets."""
    console.print(
        f"[bold]retrieval study[/]: embedder {study['embedder']}, {study['memories']} memories in one haystack",
        highlight=False,
    )
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), show_edge=False, title="questions: recall@5 / MRR")
    for col in ("ranking", "ja", "en", "all"):
        table.add_column(col, justify="left" if col == "ranking" else "right")
    for mode, buckets in study["questions"].items():
        cells = [
            f"{buckets[b]['recall']:.2f} / {buckets[b]['mrr']:.2f} (n={buckets[b]['n']})" if b in buckets else "–"
            for b in ("ja", "en", "all")
        ]
        table.add_row(mode, *cells)
    console.print(table)
    sets = Table(box=box.SIMPLE_HEAD, padding=(0, 1), show_edge=False, title="memory to update found before extract")
    for col in ("queries", "recall@5", "recall@20", "n"):
        sets.add_column(col, justify="left" if col == "queries" else "right")
    for name, row in study["query_sets"].items():
        sets.add_row(name, _cell(row["recall@5"]), _cell(row["recall@20"]), str(row["n"]))
    console.print(sets)
