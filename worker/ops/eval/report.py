"""The eval's output: one JSON document (``--json``) and the table a person reads, with what
changed against an earlier JSON (``--baseline``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from worker.ops.eval.runner import RunResult
from worker.ops.eval.scenario import CATEGORIES
from worker.ops.eval.scoring import aggregate

COLUMNS = (
    ("precision", "prec", True),
    ("recall", "recall", True),
    ("update_in_place", "in place", True),
    ("stale_rate", "stale", False),
    ("duplicate_rate", "dupes", False),
    ("recall_at_5", "R@5", True),
    ("mrr", "MRR", True),
    ("llm_calls_per_session", "calls/s", None),
    ("tokens_per_session", "tok/s", None),
    ("seconds_per_session", "sec/s", None),
)
"""(score, column, higher is better: True/False, or None for cost)."""


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


def _cell(value: float | None, key: str) -> str:
    if value is None:
        return "–"
    if key in ("llm_calls_per_session", "tokens_per_session"):
        return f"{value:.1f}" if value < 100 else f"{value:.0f}"
    if key == "seconds_per_session":
        return f"{value:.2f}"
    return f"{value:.2f}"


def _delta(now: float | None, before: float | None, better: bool | None) -> str:
    if now is None or before is None or abs(now - before) < 0.005 or better is None:
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


def render(report: dict[str, Any], console: Console, baseline: dict[str, Any] | None = None) -> None:
    meta = report["meta"]
    title = (
        f"reverie eval — {meta['mode']}: {meta['extractor']}, embedder {meta['embedder']}, "
        f"judge {meta['judge']}, {meta['scenarios']} scenarios, {meta['seconds']} s"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("category")
    table.add_column("n", justify="right")
    for _, head, _ in COLUMNS:
        table.add_column(head, justify="right")
    rows = [(c, s) for c, s in report["categories"].items()] + [("overall", report["overall"])]
    for name, scores in rows:
        before = None
        if baseline is not None:
            before = baseline["overall"] if name == "overall" else baseline.get("categories", {}).get(name)
        cells = [
            _cell(scores.get(key), key) + (_delta(scores.get(key), before.get(key), better) if before else "")
            for key, _, better in COLUMNS
        ]
        style = "bold" if name == "overall" else None
        table.add_row(name, str(scores.get("scenarios", "")), *cells, style=style)
    console.print(table)
    if baseline is not None:
        b = baseline["meta"]
        console.print(f"[dim]vs baseline: {b.get('extractor')}, embedder {b.get('embedder')}, judge {b.get('judge')}[/]")
    for error in meta["errors"]:
        console.print(f"[yellow]warning:[/] {error}")
