"""The ``reverie`` command (typer + rich). Errors are one line and a non-zero exit code.

Commands live in small modules by concept: ``process`` (demo, worker, beat, flower,
dispatcher), ``data`` (submit, search, memories, forget), ``memory`` (history, consolidate),
``ops`` (pending, stats, dlq), ``shards`` (reshard),
``events`` (the change events stream), ``webhooks`` (endpoints and their dead letters, under
``dlq``), ``observe`` (health, metrics) and ``reembed`` (moving memories to another embedding
model). Importing them registers them on ``cli``.
"""

from __future__ import annotations

import os
import sys

from worker.ops.cli import (  # noqa: F401  (registers the commands)
    data,
    evaluate,
    events,
    memory,
    observe,
    ops,
    process,
    reembed,
    shards,
    webhooks,
)
from worker.ops.cli.common import cli, err, redis_unreachable

__all__ = ["cli", "main"]


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # one clear line, no traceback, for anything unexpected
        if os.environ.get("REVERIE_DEBUG"):
            raise
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        from worker.observability.logs import redact

        if isinstance(e, RedisConnectionError | RedisTimeoutError):  # every command says it the same way
            message = redis_unreachable(e)
        else:
            message = f"{type(e).__name__}: {redact(str(e))}"
        err.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
        sys.exit(1)
