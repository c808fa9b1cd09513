"""Reading memories while a worker owns the local-mode Qdrant folder.

Local mode is a folder one process opens. A worker in local mode serves read-only search, list,
get and count on a Unix socket (``worker.memory.store.read_socket``), and leaves the socket's
path in ``<qdrant folder>/.reverie-reads``; ``SocketReader`` is the client the CLI and a dev chat
server use instead of opening the folder. Why a socket and not a Celery remote-control command:
replies to those travel through the broker, and broker messages carry ids only, never memory
text. The socket is created ``0600`` in a private temporary folder, so only the user who can read
the Qdrant folder can read through it; the user filter applies to every request as always.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from producer.errors import StoreUnavailable
from schemas.ids import SafeId
from schemas.memory import MemoryRecord

POINTER = ".reverie-reads"
TIMEOUT_S = 30.0
MAX_REPLY_BYTES = 64 * 1024 * 1024


class ReadRequest(BaseModel):
    """One read, as sent on the socket (a JSON line)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Literal["search", "list", "get", "count"]
    user_id: SafeId
    query: str | None = Field(default=None, max_length=32 * 1024)
    kind: str | None = Field(default=None, max_length=64)
    ns: str | None = Field(default=None, max_length=512)
    limit: int = Field(default=10, ge=1, le=100_000)
    ids: list[str] = Field(default_factory=list, max_length=10_000)
    include_pending: bool = False
    min_score: float | None = Field(default=None, ge=-1, le=1)


def pointer_file(qdrant_path: Path) -> Path:
    return qdrant_path / POINTER


def socket_path(qdrant_path: Path) -> Path | None:
    """Where the worker that owns ``qdrant_path`` serves reads, if one does."""
    try:
        path = Path(pointer_file(qdrant_path).read_text(encoding="utf-8").strip())
    except OSError:
        return None
    return path if path.exists() else None


class SocketReader:
    """The read client of a worker's local store: ``MemoryReader``'s read methods, same answers."""

    local = True

    def __init__(self, path: Path, *, timeout_s: float = TIMEOUT_S) -> None:
        self.path = path
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"SocketReader({self.path})"

    def alive(self) -> bool:
        """Whether a worker answers on the socket (a stale path from a dead worker does not)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(2.0)
                conn.connect(str(self.path))
            return True
        except OSError:
            return False

    def _ask(self, request: ReadRequest) -> Any:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(self.timeout_s)
                conn.connect(str(self.path))
                conn.sendall(request.model_dump_json().encode() + b"\n")
                chunks, size = [], 0
                while not (chunks and chunks[-1].endswith(b"\n")):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > MAX_REPLY_BYTES:
                        raise StoreUnavailable("the worker's read reply is too large")
        except OSError as e:
            raise StoreUnavailable(
                f"cannot read through the worker's socket {self.path} ({type(e).__name__})"
            ) from None
        reply = json.loads(b"".join(chunks) or b"{}")
        if not reply.get("ok"):
            raise ValueError(reply.get("error") or "the worker refused the read")
        return reply["value"]

    def _records(self, request: ReadRequest) -> list[MemoryRecord]:
        return [MemoryRecord.model_validate(r) for r in self._ask(request)]

    def search(
        self,
        user_id: str,
        query: str,
        *,
        kind: str | None = None,
        limit: int = 10,
        ns: str | None = None,
        include_pending: bool = False,
        min_score: float | None = None,
    ) -> list[MemoryRecord]:
        request = ReadRequest(
            op="search",
            user_id=user_id,
            query=query,
            kind=kind,
            limit=limit,
            ns=ns,
            include_pending=include_pending,
            min_score=min_score,
        )
        return self._records(request)

    def list(
        self, user_id: str, *, kind: str | None = None, limit: int = 1000, ns: str | None = None
    ) -> list[MemoryRecord]:
        return self._records(ReadRequest(op="list", user_id=user_id, kind=kind, limit=limit, ns=ns))

    def get(self, user_id: str, ids: Sequence[str]) -> list[MemoryRecord]:
        return self._records(ReadRequest(op="get", user_id=user_id, ids=list(ids)))

    def count(self, user_id: str, kind: str | None = None) -> int:
        return int(self._ask(ReadRequest(op="count", user_id=user_id, kind=kind)))

    def close(self) -> None:
        pass
