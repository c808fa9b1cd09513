"""The README's first command: ``reverie demo`` on embedded defaults, from a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_runs_one_reflection_per_burst(tmp_path: Path) -> None:
    """No REVERIE_*/REDIS_URL: embedded Valkey, local Qdrant, offline extractor; exit 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVERIE_") and k != "REDIS_URL"}
    env["REVERIE_QDRANT_PATH"] = str(tmp_path / "qdrant")
    exe = Path(sys.executable).with_name("reverie")
    out = subprocess.run([str(exe), "demo"], capture_output=True, text=True, env=env, timeout=110, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "4 bursts → 4 reflections (one per burst)" in out.stdout
    assert "offline manager (not an LLM)" in out.stdout
    # the article's story, offline: ramen updated in place, pasta deleted, no contradiction left
    alice = out.stdout.split("Memories of alice")[1].split("Memories of bob")[0]
    assert "ラーメンは味噌ラーメンが好き" in alice and "updated ×1" in alice
    assert "パスタも好きです" in alice and "deleted" in alice and "パスタは嫌い" not in alice
    bob = out.stdout.split("Memories of bob")[1].split("search(")[0]
    assert bob.count("inserted") == 4  # distinct facts stay apart
    first_hit = out.stdout.split("search(alice, 'What food does she like?'):")[1].strip().splitlines()[0]
    assert "ラーメン" in first_hit


def _demo(tmp_path: Path, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVERIE_") and k != "REDIS_URL"}
    env |= {"REVERIE_REDIS_URL": redis_url, "REVERIE_QDRANT_PATH": str(tmp_path / "qdrant")}
    exe = Path(sys.executable).with_name("reverie")
    return subprocess.run([str(exe), "demo", *args], capture_output=True, text=True, env=env, timeout=110, cwd=tmp_path)


def test_demo_names_its_redis_and_prefix_and_leaves_no_key_behind(tmp_path: Path, redis_url, redis_client) -> None:
    """On a configured Redis the demo says where it writes, removes its keys (Celery's too),
    and ends with next steps."""
    out = _demo(tmp_path, redis_url)
    assert out.returncode == 0, out.stderr[-2000:]
    host_port = redis_url.split("://", 1)[1].split("@")[-1]
    assert f"Redis: {host_port}" in out.stdout and "key prefix reverie-demo:" in out.stdout
    assert "removed at exit" in out.stdout
    assert list(redis_client.scan_iter(match="reverie-demo:*")) == []
    steps = out.stdout.split("Next steps", 1)[1]
    assert "reverie worker" in steps and "reverie flower" in steps and "reverie eval --model" in steps


def test_demo_keep_leaves_its_keys_for_inspection(tmp_path: Path, redis_url, redis_client) -> None:
    try:
        out = _demo(tmp_path, redis_url, "--keep")
        assert out.returncode == 0, out.stderr[-2000:]
        kept = [k.decode() for k in redis_client.scan_iter(match="reverie-demo:*")]
        assert any(":h:alice" in k or "alice" in k for k in kept), kept
        assert "REVERIE_KEY_PREFIX=reverie-demo" in out.stdout
    finally:
        for key in redis_client.scan_iter(match="reverie-demo:*"):
            redis_client.delete(key)
