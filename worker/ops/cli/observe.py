"""Health and Prometheus metrics from the command line."""

from __future__ import annotations

from typing import Annotated

import typer

from worker.ops.cli.common import JsonOpt, cli, console, coordinator, fail, print_json, settings


@cli.command()
def health(
    probe: Annotated[bool, typer.Option("--probe", help="Also send the model a one-token request.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check that Redis, Qdrant and the LLM/embedding settings are usable (exit 1 if not)."""
    from worker.ops.health import check_all

    checks = check_all(settings(), probe_llm=probe)
    healthy = all(c.status != "fail" for c in checks)
    if as_json:
        print_json({"healthy": healthy, "checks": [c.as_dict() for c in checks]})
    else:
        colour = {"ok": "green", "warn": "yellow", "fail": "red"}
        for c in checks:
            console.print(
                f"[{colour[c.status]}]{c.status:>4}[/] {c.name:<10} {c.detail}", highlight=False, soft_wrap=True
            )
    if not healthy:
        raise typer.Exit(1)


@cli.command()
def metrics(
    serve: Annotated[bool, typer.Option("--serve", help="Run an exporter until interrupted.")] = False,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Exporter port with --serve.")] = 9808,
    address: Annotated[str, typer.Option(help="Exporter bind address with --serve.")] = "127.0.0.1",
) -> None:
    """Print Reverie's Prometheus metrics (fleet-wide, read from Redis), or serve them."""
    import threading

    from worker.observability.metrics import build_registry, render
    from worker.observability.metrics import serve as start
    from worker.pipeline.stats import RedisCollector

    registry = build_registry(RedisCollector(coordinator()), local=False)
    if not serve:
        try:
            typer.echo(render(registry), nl=False)
        except OSError as e:
            fail(f"cannot read metrics from Redis: {e}", code=1)
        return
    try:
        server = start(registry, port, address)
    except OSError as e:
        fail(f"cannot listen on {address}:{port}: {e}", code=1)
    console.print(f"serving metrics on http://{address}:{port}/metrics", highlight=False)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()  # type: ignore[attr-defined]
