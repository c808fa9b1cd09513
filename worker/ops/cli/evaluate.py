"""``reverie eval``: a memory-quality score for any litellm model, or the offline manager."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from worker.ops.cli.common import JsonOpt, cli, console, err, fail, print_json, settings

if TYPE_CHECKING:
    from schemas.settings import Settings
    from worker.ops.eval.scenario import Scenario

MODES = ("pipeline", "extraction", "retrieval")


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
    locomo: Annotated[
        Path | None, typer.Option(help="Run LoCoMo QA on your copy of locomo10.json instead (needs a model).")
    ] = None,
    top_k: Annotated[int, typer.Option(min=1, max=100, help="LoCoMo: memories given to the answering model.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Score memory quality on the shipped scenarios (Japanese and English): precision, recall,
    updates in place, stale facts, duplicates, retrieval recall@5 and MRR, cost per session."""
    from worker.ops.eval.scenario import EvalFormatError, load_scenarios

    if mode not in MODES:
        fail(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    extra: dict[str, Any] = {"embedding_model": embedding_model} if embedding_model else {}
    if locomo is not None:  # answers need a model: --model, else REVERIE_MODEL
        _locomo(settings(**extra, **({"model": model} if model else {})), locomo, judge, top_k, as_json, out)
        return
    s = settings(model=model, **extra)  # the scenario eval scores exactly what --model names
    before = _baseline(baseline)
    try:
        chosen = load_scenarios(scenarios, categories=category)
    except EvalFormatError as e:
        fail(str(e))
    if not chosen:
        fail("no scenario matches (check --category)")
    if mode == "retrieval":
        _study(s, chosen, as_json, out)
    else:
        source = ", ".join(map(str, scenarios)) if scenarios else "shipped"
        _run(s, chosen, judge, mode, before, out, as_json, source=source)


def _baseline(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    from worker.ops.eval.report import load_baseline

    try:
        return load_baseline(path)
    except ValueError as e:
        fail(str(e))


def _write(out: Path | None, report: dict[str, Any]) -> None:
    if out is not None:
        out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")


def _run(
    s: Settings,
    chosen: list[Scenario],
    judge_model: str | None,
    mode: str,
    before: dict[str, Any] | None,
    out: Path | None,
    as_json: bool,
    *,
    source: str,
) -> None:
    from worker.memory.llm import LLMClient
    from worker.observability.logs import configure
    from worker.ops.eval.judge import Judge, LLMJudge, OfflineJudge
    from worker.ops.eval.profiles import manager_for
    from worker.ops.eval.report import build, render
    from worker.ops.eval.runner import run_extraction, run_pipeline

    configure("WARNING")
    judge: Judge = LLMJudge(LLMClient.from_settings(s, judge_model)) if judge_model else OfflineJudge()
    columns = (TextColumn(f"eval ({mode})"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, disable=as_json) as bar:
        task = bar.add_task("sessions", total=sum(len(sc.sessions) for sc in chosen))

        def progress(done: int, _total: int) -> None:
            bar.update(task, completed=done)

        if mode == "pipeline":
            result = run_pipeline(s, chosen, judge, progress=progress)
        else:
            result = run_extraction(
                chosen, judge, lambda sc: manager_for(s, sc), embedder=s.embedding_model, progress=progress
            )
    report = build(result, judge=judge.name, scenario_source=source)
    _write(out, report)
    if as_json:
        print_json(report)
    else:
        render(report, console, before)


def _study(s: Settings, chosen: list[Scenario], as_json: bool, out: Path | None) -> None:
    from producer.memories.embeddings import make_embedder
    from worker.ops.eval.report import render_study
    from worker.ops.eval.retrieval import run_study

    study = run_study(make_embedder(s), chosen)
    _write(out, study)
    if as_json:
        print_json(study)
    else:
        render_study(study, console)


def _locomo(s: Settings, path: Path, judge_model: str | None, top_k: int, as_json: bool, out: Path | None) -> None:
    from worker.observability.logs import configure
    from worker.ops.eval.locomo import render, run_locomo
    from worker.ops.eval.locomo_protocol import LocomoFormatError, load_locomo, questions

    if s.model is None:
        fail("LoCoMo needs a model for answering and judging: pass --model (e.g. openai/gpt-4o-mini)")
    try:
        samples = load_locomo(path)
    except LocomoFormatError as e:
        fail(str(e))
    configure("WARNING")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, disable=as_json) as bar:
        tasks = {
            "ingest": bar.add_task("ingest sessions", total=sum(len(x.sessions) for x in samples)),
            "answer": bar.add_task("answer", total=sum(1 for _ in questions(samples))),
        }

        def progress(phase: str, done: int, total: int) -> None:
            bar.update(tasks[phase], completed=done, total=total)

        report = run_locomo(s, samples, source=str(path), judge_model=judge_model, top_k=top_k, progress=progress)
    _write(out, report)
    if as_json:
        print_json(report)
    else:
        render(report, console)
