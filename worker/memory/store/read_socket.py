"""The worker side of ``producer.memories.local_socket``: while a worker owns the local-mode
Qdrant folder, it answers read-only requests (search, list, get, count) on a Unix socket, with
its own store and the user filter as always. One JSON line in, one JSON line out."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socketserver
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from producer.memories.local_socket import MAX_REPLY_BYTES, ReadRequest, pointer_file
from producer.memories.reader import MemoryReader
from worker.observability.logs import get_logger

log = get_logger("reverie.reads")
MAX_REQUEST_BYTES = 1024 * 1024


def answer(reader: MemoryReader, request: ReadRequest) -> Any:
    if request.op == "search":
        hits = reader.search(
            request.user_id,
            request.query or "",
            kind=request.kind,
            limit=request.limit,
            ns=request.ns,
            include_pending=request.include_pending,
            min_score=request.min_score,
        )
        return [r.model_dump(mode="json") for r in hits]
    if request.op == "list":
        found = reader.list(request.user_id, kind=request.kind, limit=request.limit, ns=request.ns)
        return [r.model_dump(mode="json") for r in found]
    if request.op == "get":
        return [r.model_dump(mode="json") for r in reader.get(request.user_id, request.ids)]
    return reader.count(request.user_id, kind=request.kind)


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        line = self.rfile.readline(MAX_REQUEST_BYTES)
        try:
            request = ReadRequest.model_validate_json(line)
            reply = {"ok": True, "value": answer(self.server.reader(), request)}
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors(include_input=False)
            )
            reply = {"ok": False, "error": f"invalid read: {problems}"}
        except ValueError as e:
            reply = {"ok": False, "error": str(e)[:300]}
        except Exception as e:  # the store failed: the client gets a line, the log the details
            log.warning("local read failed", error=type(e).__name__)
            reply = {"ok": False, "error": f"the worker's store failed ({type(e).__name__})"}
        data = json.dumps(reply, ensure_ascii=False).encode()
        if len(data) > MAX_REPLY_BYTES:
            data = json.dumps({"ok": False, "error": "reply too large: ask for fewer memories"}).encode()
        self.wfile.write(data + b"\n")


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    reader: Callable[[], MemoryReader]


class ReadSocket:
    """Serve ``reader()`` on a socket in a private temporary folder; point to it from the Qdrant
    folder. ``close`` removes both."""

    def __init__(self, reader: Callable[[], MemoryReader], qdrant_path: Path) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="reverie-"))  # 0700: this user only
        self.path = self.folder / "reads.sock"
        self.pointer = pointer_file(qdrant_path)
        self.server = _Server(str(self.path), _Handler)
        self.server.reader = reader
        os.chmod(self.path, 0o600)
        self.pointer.write_text(str(self.path), encoding="utf-8")
        self.thread = threading.Thread(target=self.server.serve_forever, name="reverie-reads", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        with contextlib.suppress(OSError):
            if self.pointer.read_text(encoding="utf-8").strip() == str(self.path):
                self.pointer.unlink()
        shutil.rmtree(self.folder, ignore_errors=True)
