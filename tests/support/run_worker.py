"""Worker processes for the fault tests, started from a preloaded "zygote".

Importing litellm costs about 6-10 s of CPU on these machines, and the crash tests start many
short-lived workers. So a zygote process imports everything once (celery, litellm,
qdrant-client, Reverie) and forks one child per worker, like Celery's prefork pool or
gunicorn's ``--preload``. Each child is a real, separate worker process: it builds
``create_app(Settings())`` from its own ``REVERIE_*`` environment and runs ``worker_main``,
with its own connections, and the tests SIGKILL it.

Protocol on stdin/stdout, one JSON object per line:
  in:  {"env": {...}, "log": "/path"}         → out: {"started": pid}
  out: {"exited": pid, "code": exit code}      (negative: killed by that signal)
On stdin EOF the zygote SIGKILLs its remaining children and exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def preload() -> None:
    import celery.worker  # noqa: F401
    import qdrant_client  # noqa: F401

    import worker.app
    import worker.runtime  # noqa: F401
    from worker.memory.llm import load_litellm

    load_litellm()


def run_worker() -> None:
    from schemas.settings import Settings
    from worker.app import create_app
    from worker.observability.logs import configure

    settings = Settings()
    configure(settings.log_level, json=True)
    app = create_app(settings)
    app.worker_main(
        [
            "worker",
            "--loglevel=WARNING",
            "-Q",
            app.reverie_broker.queue,  # "reverie" on Redis, "<prefix>.tasks" on RabbitMQ
            "--without-mingle",
            "--without-gossip",
            f"--hostname=w{os.getpid()}@127.0.0.1",
        ]
    )


def _child(request: dict[str, object]) -> None:
    code = 0
    try:
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in dict(request["env"]).items()})  # type: ignore[call-overload]
        # stderr (every log line) to the log; stdout (Celery's banner and shutdown notice) beside it
        log = os.open(str(request["log"]), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        out = os.open(f"{request['log']}.stdout", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(out, 1)
        os.dup2(log, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        run_worker()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _say(obj: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def serve() -> None:
    preload()
    children: set[int] = set()
    _say({"ready": os.getpid()})
    while True:
        readable, _, _ = select.select([sys.stdin], [], [], 0.05)
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            children.discard(pid)
            _say({"exited": pid, "code": os.waitstatus_to_exitcode(status)})
        if not readable:
            continue
        line = sys.stdin.readline()
        if not line:
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return
        pid = os.fork()
        if pid == 0:
            _child(json.loads(line))
        children.add(pid)
        _say({"started": pid})


if __name__ == "__main__":
    serve()
