"""Process commands tell a supervisor the truth: a worker that cannot start exits non-zero, with
one line that says why, and what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from tests.conftest import ROOT_DIR


def _reverie(args: list[str], env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("reverie")
    full = {k: v for k, v in os.environ.items() if not k.startswith("REVERIE_")} | env
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=full, timeout=timeout, cwd=ROOT_DIR)


@pytest.fixture
def locked_folder(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A local-mode Qdrant folder another process (this one) has open, as a running worker would."""
    folder = tmp_path / "qdrant"
    client = QdrantClient(path=str(folder))
    yield folder
    client.close()


@pytest.mark.timeout(150)
def test_a_second_worker_on_a_local_folder_exits_1_with_one_clear_line(locked_folder, redis_url, prefix) -> None:
    env = {"REVERIE_REDIS_URL": redis_url, "REVERIE_KEY_PREFIX": prefix, "REVERIE_QDRANT_PATH": str(locked_folder)}
    done = _reverie(["worker"], env)
    assert done.returncode == 1
    [line] = [x for x in done.stderr.splitlines() if x.strip()]
    assert line.startswith("error: the local-mode Qdrant folder") and "in use by another process" in line
    assert "REVERIE_QDRANT_URL" in line and "Traceback" not in done.stderr


@pytest.mark.timeout(150)
def test_health_and_demo_say_the_same_about_a_busy_folder(locked_folder, redis_url, prefix) -> None:
    env = {"REVERIE_REDIS_URL": redis_url, "REVERIE_KEY_PREFIX": prefix, "REVERIE_QDRANT_PATH": str(locked_folder)}
    health = _reverie(["health"], env)
    assert "qdrant" in health.stdout and "in use by another process" in health.stdout
    assert "Traceback" not in health.stderr + health.stdout
    demo = _reverie(["demo", "--timeout", "20"], env)
    assert demo.returncode == 1 and "in use by another process" in demo.stderr
    assert "Traceback" not in demo.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, auth: tuple[str, str] | None = None) -> int:
    import base64
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.timeout(120)
def test_flower_takes_credentials_from_a_file_and_keeps_them_out_of_ps(tmp_path: Path, redis_url, prefix) -> None:
    import time
    import urllib.error

    secret = tmp_path / "flower-auth"
    secret.write_text("# ops team\nops:s3cret-pass\n")
    port = _free_port()
    exe = Path(sys.executable).with_name("reverie")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REVERIE_", "FLOWER_"))}
    env |= {"REVERIE_REDIS_URL": redis_url, "REVERIE_KEY_PREFIX": prefix}
    proc = subprocess.Popen(
        [str(exe), "flower", "--port", str(port), "--basic-auth-file", str(secret)],
        env=env,
        cwd=ROOT_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url, deadline, status = f"http://127.0.0.1:{port}/", time.monotonic() + 60, 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = _get(url)
                break
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        assert status == 401, "Flower must ask for credentials"
        assert _get(url, ("ops", "wrong")) == 401
        assert _get(url, ("ops", "s3cret-pass")) == 200
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert b"s3cret-pass" not in cmdline and b"flower-auth" in cmdline
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--basic-auth=ops:s3cret"], {}, "--basic-auth on the command line shows the password in `ps`"),
        (["--basic_auth", "ops:s3cret"], {}, "--basic-auth on the command line shows the password in `ps`"),
        (["--basic-auth-file", "/nonexistent/auth"], {}, "--basic-auth-file /nonexistent/auth: cannot read it"),
        ([], {"FLOWER_BASIC_AUTH": "ops"}, "FLOWER_BASIC_AUTH: entry 1 is not user:password"),
        ([], {"FLOWER_BASIC_AUTH": " , "}, "FLOWER_BASIC_AUTH: no user:password pair"),
    ],
)
def test_flower_refuses_credentials_it_cannot_keep_secret_or_use(args, env, message, redis_url, prefix) -> None:
    done = _reverie(["flower", *args], {"REVERIE_REDIS_URL": redis_url, "REVERIE_KEY_PREFIX": prefix} | env, 30)
    assert done.returncode == 2
    assert message in done.stderr and "s3cret" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.timeout(120)
def test_a_standalone_dispatcher_runs_beside_a_worker_that_owns_the_local_folder(
    locked_folder, redis_url, prefix, redis_client
) -> None:
    """``reverie dispatcher`` needs Redis and the broker, not Qdrant: with the folder held by
    another process (as a local-mode worker holds it) it still claims a due thread."""
    import time

    from producer import Producer, ProducerConfig
    from producer.keys import member

    with Producer(ProducerConfig(redis_url=redis_url, key_prefix=prefix, after_seconds=0)) as p:
        p.submit("alice", "t1", [{"role": "user", "content": "hello"}])
    exe = Path(sys.executable).with_name("reverie")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVERIE_")}
    env |= {"REVERIE_REDIS_URL": redis_url, "REVERIE_KEY_PREFIX": prefix, "REVERIE_QDRANT_PATH": str(locked_folder)}
    log = locked_folder.parent / "dispatcher.err"
    with log.open("w") as err:
        proc = subprocess.Popen([str(exe), "dispatcher"], env=env, cwd=ROOT_DIR, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if redis_client.zscore(f"{prefix}:inflight_ss", member("alice", "t1")) is not None:
                break
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text()[-2000:]
        assert redis_client.zscore(f"{prefix}:inflight_ss", member("alice", "t1")) is not None, "never claimed"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        for key in redis_client.scan_iter(match=f"{prefix}:*"):
            redis_client.delete(key)
