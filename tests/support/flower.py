"""A real Flower process (``celery -A worker.app flower``) on loopback, configured only through
``REVERIE_*`` variables, with basic auth; stopped when the context ends."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.support.procs import ROOT, free_port

USER, PASSWORD = "ops", "s3cret-pw"
AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def get(url: str, *, auth: bool = True) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": AUTH} if auth else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


@contextlib.contextmanager
def running_flower(reverie_env: Mapping[str, str], log_path: Path) -> Iterator[str]:
    """Start Flower with these ``REVERIE_*`` variables; yields its base URL once it answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REVERIE_", "FLOWER_"))} | dict(reverie_env)
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.app",
        "flower",
        f"--basic-auth={USER}:{PASSWORD}",
        f"--port={port}",
        "--address=127.0.0.1",
    ]
    log = log_path.open("w")
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                if get(f"{base}/api/workers")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise AssertionError("flower did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
