"""``reverie eval``: a memory-quality score for any litellm model, or the offline manager."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from worker.ops.cli.common import JsonOpt, cli, console, err, fail, print_json, settings


@cli.command("eval")
def evaluate(
    model: Annotated[
        str | None, typer.Option(help="litellm model to score (default: the offline manager, not an LLM).")
    ] = None,
    judge: Annotated[
        str | None, typer.Option(help="litellm model that judges free-text facts (default: offline judge).")
    ] = None,
    embedding_model: Annotated[
        str | None, typer.Option(help="Embedder of the system under test (default REVERIE_EMBEDDING_MODEL).")
    ] = None,
    scenarios: Annotated[
        list[Path] | None, typer.Option("--scenarios", help="Folder of *.yaml scenarios (repeatable).")
    ] = None,
    category: Annotated[list[str] | None, typer.Option("--category", help="Only these categories.")] = None,
    mode: Annotated[
        str,
        typer.Option(
            help="pipeline (producer, worker, Qdrant), extraction (the memory manager alone), or retrieval "
            "(dense vs hybrid search and the search-before-extract query sets, on one haystack)."
        ),
    ] = "pipeline",
    baseline: Annotated[Path | None, typer.Option(help="An earlier --json output: show what changed.")] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON report to this file.")] = None,
    locomo: Annotated[Path | None, typer.Option(help="Run LoCoMo QA on this copy of locomo10.json instead.")] = None,
    top_k: Annotated[int, typer.Option(min=1, max=100, help="LoCoMo: memories given to the answering model.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Score memory quality on the shipped scenarios (Japanese and English): precision, recall,
    updates in place, stale facts, duplicates, retrieval recall@5 and MRR, cost per session."""
    from worker.ops.eval.scenario import EvalFormatError, load_scenarios

    if mode not in ("pipeline", "extraction", "retrieval"):
        fail(f"--mode must be pipeline, extraction or retrieval, got {mode!r}")
    overrides = {"model": model} | ({"embedding_model": embedding_model} if embedding_model else {})
    s = settings(**overrides)
    before = None
    if baseline is not None:
        from worker.ops.eval.report import load_baseline

        try:
            before = load_baseline(baseline)
        except ValueError as e:
            fail(str(e))
    if locomo is not None:
        from worker.ops.eval.locomo import run_locomo_cli

        run_locomo_cli(s, locomo, judge=judge, top_k=top_k, as_json=as_json, out=out)
        return
    try:
        chosen = load_scenarios(scenarios, categories=category)
    except EvalFormatError as e:
        fail(str(e))
    if not chosen:
        fail("no scenario matches (check --category)")
    if mode == "retrieval":
        _study(s, chosen, as_json, out)
        return
    _run(s, chosen, judge, mode, before, out, as_json, source=", ".join(map(str, scenarios or ["shipped"])))  # type: ignore[arg-type]


def _run(s, chosen, judge_model, mode: Literal["pipeline", "extraction"], before, out, as_json, *, source) -> None:  # type: ignore[no-untyped-def]
    import json

    from worker.memory.llm import LLMClient
    from worker.observability.logs import configure
    from worker.ops.eval.judge import LLMJudge, OfflineJudge
    from worker.ops.eval.report import build, render
    from worker.ops.eval.runner import run_extraction, run_pipeline

    configure("WARNING")
    judge = LLMJudge(LLMClient.from_settings(s, judge_model)) if judge_model else OfflineJudge()
    total = sum(len(sc.sessions) for sc in chosen)
    columns = (TextColumn(f"eval ({mode})"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, disable=as_json) as bar:
        task = bar.add_task("sessions", total=total)

        def progress(done: int, _total: int) -> None:
            bar.update(task, completed=done)

        if mode == "pipeline":
            result = run_pipeline(s, chosen, judge, progress=progress)
        else:
            from worker.memory.manager import MemoryManager
            from worker.ops.eval.profiles import manager_for

            def make(scenario) -> MemoryManager:  # type: ignore[no-untyped-def]
                return manager_for(s, scenario)

            result = run_extraction(chosen, judge, make, embedder=s.embedding_model, progress=progress)
    report = build(result, judge=judge.name, scenario_source=source)
    if out is not None:
        out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    if as_json:
        print_json(report)
        return
    render(report, console, before)


def _study(s, chosen, as_json: bool, out: Path | None) -> None:  # type: ignore[no-untyped-def]
    import json

    from producer.memories.embeddings import make_embedder
    from worker.ops.eval.report import render_study
    from worker.ops.eval.retrieval import run_study

    study = run_study(make_embedder(s), chosen)
    if out is not None:
        out.write_text(json.dumps(study, indent=2, ensure_ascii=False), encoding="utf-8")
    if as_json:
        print_json(study)
    else:
        render_study(study, console)
