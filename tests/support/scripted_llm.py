"""OpenAI-compatible scripted HTTP server for tests and benchmarks.

No LLM/embedding API is reachable in CI, so tests point litellm's real OpenAI code
path (``api_base=srv.base_url``) at this stdlib server. It answers deterministically,
records what it received, and can inject latency and faults (429/500/timeout/
truncated body/badly-typed tool arguments) to exercise retry and error handling.
Request bodies are conversation text: nothing is ever logged.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Fault", "Reply", "ScriptedLLM", "text_reply", "tool_calls_reply"]

FAULT_KINDS = ("429", "500", "timeout", "truncated", "bad_args")


@dataclass(frozen=True)
class Reply:
    """A normal assistant answer: the ``message`` dict plus its finish_reason."""

    message: dict[str, Any]
    finish_reason: str


def text_reply(text: str) -> Reply:
    return Reply({"role": "assistant", "content": text}, "stop")


def tool_calls_reply(calls: list[tuple[str, dict[str, Any] | str]]) -> Reply:
    """Tool calls; a str ``arguments`` is sent raw so tests can send malformed JSON."""
    tool_calls = [
        {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
        }
        for i, (name, args) in enumerate(calls)
    ]
    return Reply({"role": "assistant", "content": None, "tool_calls": tool_calls}, "tool_calls")


@dataclass(frozen=True)
class Fault:
    """A misbehaving answer. Build with the classmethods rather than directly."""

    kind: str
    status_code: int = 200
    retry_after_s: float | None = None
    seconds: float = 0.0

    @classmethod
    def status(cls, code: int, retry_after_s: float | None = None) -> Fault:
        return cls(kind=str(code), status_code=code, retry_after_s=retry_after_s)

    @classmethod
    def timeout(cls, seconds: float = 5.0) -> Fault:
        """Stall ``seconds`` before answering normally, so a shorter client timeout fires."""
        return cls(kind="timeout", seconds=seconds)

    @classmethod
    def truncated(cls) -> Fault:
        return cls(kind="truncated")

    @classmethod
    def bad_args(cls) -> Fault:
        return cls(kind="bad_args")


def _fault_for_kind(kind: str, timeout_s: float) -> Fault:
    if kind == "timeout":
        return Fault.timeout(timeout_s)
    if kind == "truncated":
        return Fault.truncated()
    if kind == "bad_args":
        return Fault.bad_args()
    code = int(kind)
    return Fault.status(code, retry_after_s=1.0 if code == 429 else None)


def _default_responder(_body: dict[str, Any]) -> Reply:
    return text_reply("ok")


def _estimate_prompt_tokens(body: dict[str, Any]) -> int:
    chars = 0
    for msg in body.get("messages") or []:
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):  # multi-part content
            chars += sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
    return chars // 4 + 1


def _estimate_completion_tokens(message: dict[str, Any]) -> int:
    chars = len(message.get("content") or "")
    for call in message.get("tool_calls") or []:
        fn = call["function"]
        chars += len(fn["name"]) + len(fn["arguments"])
    return chars // 4 + 1


def embed_text(text: str, dims: int, seed: int = 0) -> list[float]:
    """Deterministic unit vector from blake2b(text) — same text, same vector."""
    out: list[float] = []
    counter = 0
    while len(out) < dims:
        digest = hashlib.blake2b(f"{seed}:{counter}:{text}".encode(), digest_size=64).digest()
        out.extend((v / 2**31) - 1.0 for v in struct.unpack("<16I", digest))
        counter += 1
    vec = out[:dims]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with exact Content-Length so httpx can keep connections alive."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes; avoid 40 ms stalls
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # never log conversation text
        pass

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), headers)

    def _send_raw(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # client gave up (e.g. its timeout fired); nothing to answer
            self.close_connection = True

    def _read_body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return {}
        return body if isinstance(body, dict) else {}

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            llm = self.server.llm
            models = [llm.model.split("/", 1)[1], llm.embedding_model.split("/", 1)[1]]
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "scripted"} for m in models]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._not_found()

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/v1/chat/completions":
            self._chat(self._read_body())
        elif path == "/v1/embeddings":
            self._embeddings(self._read_body())
        else:
            self._read_body()  # drain so the connection stays usable
            self._not_found()

    def _not_found(self) -> None:
        err = {"message": f"Unknown path {self.path}", "type": "invalid_request_error", "code": "not_found"}
        self._send_json(404, {"error": err})

    def _chat(self, body: dict[str, Any]) -> None:
        llm = self.server.llm
        try:
            action = llm._next_action(body)
        except Exception as exc:  # a buggy responder should fail the test loudly, not hang up
            llm.responder_errors.append(exc)
            err = {"message": f"responder raised {type(exc).__name__}", "type": "server_error"}
            self._send_json(500, {"error": err})
            return
        if llm.latency_s > 0:
            time.sleep(llm.latency_s)
        if isinstance(action, Fault):
            self._fault(action, body)
        else:
            self._send_json(200, _completion(body, action))

    def _fault(self, fault: Fault, body: dict[str, Any]) -> None:
        if fault.kind == "timeout":
            time.sleep(fault.seconds)
            self._send_json(200, _completion(body, text_reply("late")))
        elif fault.kind == "truncated":
            data = json.dumps(_completion(body, text_reply("truncated"))).encode()
            self._send_raw(200, data[: len(data) // 2])
        elif fault.kind == "bad_args":
            tools = body.get("tools") or []
            name = tools[0].get("function", {}).get("name", "unknown") if tools else "unknown"
            self._send_json(200, _completion(body, tool_calls_reply([(name, {"content": 123})])))
        else:
            headers = {}
            if fault.retry_after_s is not None:
                headers["Retry-After"] = f"{fault.retry_after_s:g}"
            err_type = "rate_limit_exceeded" if fault.status_code == 429 else "server_error"
            err = {"message": f"Scripted fault {fault.status_code}", "type": err_type, "code": err_type}
            self._send_json(fault.status_code, {"error": err}, headers)

    def _embeddings(self, body: dict[str, Any]) -> None:
        llm = self.server.llm
        llm._record_embedding(body)
        if llm.latency_s > 0:
            time.sleep(llm.latency_s)
        inputs = body.get("input", [])
        texts = [inputs] if isinstance(inputs, str) else [str(t) for t in inputs]
        data = [
            {"object": "embedding", "index": i, "embedding": embed_text(t, llm.embedding_dims, llm.seed)}
            for i, t in enumerate(texts)
        ]
        tokens = sum(len(t) for t in texts) // 4 + 1
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        self._send_json(200, {"object": "list", "data": data, "model": body.get("model"), "usage": usage})


def _completion(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    prompt = _estimate_prompt_tokens(body)
    completion = _estimate_completion_tokens(reply.message)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "scripted"),
        "choices": [{"index": 0, "message": reply.message, "finish_reason": reply.finish_reason}],
        "usage": usage,
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # benchmarks open 100+ connections at once
    llm: ScriptedLLM

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay silent: the default prints a traceback, and clients dropping mid-fault is expected."""


class ScriptedLLM:
    """Scripted stand-in for an OpenAI-compatible endpoint; use as a context manager."""

    model: str = "openai/scripted"
    embedding_model: str = "openai/scripted-embed"

    def __init__(self, *, latency_s: float = 0.0, embedding_dims: int = 64, seed: int = 0) -> None:
        self.latency_s = latency_s  # mutable at runtime; read per request
        self.embedding_dims = embedding_dims
        self.seed = seed
        self.fault_timeout_s = 5.0  # stall used by random "timeout" faults from set_fault_rate
        self.chat_requests: list[dict[str, Any]] = []  # every chat request, faulted or not
        self.embedding_requests: list[dict[str, Any]] = []
        self.faults_served = 0
        self.responder_errors: list[BaseException] = []  # exceptions raised by set_responder's fn
        self._lock = threading.Lock()
        self._queue: deque[Reply | Fault] = deque()
        self._responder: Callable[[dict[str, Any]], Reply] = _default_responder
        self._rng = random.Random(seed)
        self._fault_rate = 0.0
        self._fault_kinds: tuple[str, ...] = FAULT_KINDS
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle -----------------------------------------------------------------
    def start(self) -> ScriptedLLM:
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _Handler)
        server.llm = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="scripted-llm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> ScriptedLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("ScriptedLLM not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    # recording -----------------------------------------------------------------
    @property
    def chat_calls(self) -> int:
        with self._lock:
            return len(self.chat_requests)

    @property
    def embedding_calls(self) -> int:
        with self._lock:
            return len(self.embedding_requests)

    def reset(self) -> None:
        with self._lock:
            self.chat_requests.clear()
            self.embedding_requests.clear()
            self.faults_served = 0
            self.responder_errors.clear()
            self._queue.clear()
            self._responder = _default_responder
            self._fault_rate = 0.0
            self._fault_kinds = FAULT_KINDS
            self._rng = random.Random(self.seed)

    # scripting -----------------------------------------------------------------
    def set_responder(self, fn: Callable[[dict[str, Any]], Reply]) -> None:
        with self._lock:
            self._responder = fn

    def enqueue(self, *replies: Reply | Fault) -> None:
        with self._lock:
            self._queue.extend(replies)

    def set_fault_rate(self, rate: float, kinds: Sequence[str] = FAULT_KINDS) -> None:
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown or not kinds or not 0.0 <= rate <= 1.0:
            raise ValueError(f"bad fault config rate={rate} kinds={list(kinds)}")
        with self._lock:
            self._fault_rate = rate
            self._fault_kinds = tuple(kinds)

    # internals (called from handler threads) ------------------------------------
    def _next_action(self, body: dict[str, Any]) -> Reply | Fault:
        """Record the request and decide: random fault, then queued reply, then responder."""
        with self._lock:
            self.chat_requests.append(body)
            action: Reply | Fault | None = None
            if self._fault_rate > 0 and self._rng.random() < self._fault_rate:
                action = _fault_for_kind(self._rng.choice(self._fault_kinds), self.fault_timeout_s)
            elif self._queue:
                action = self._queue.popleft()
            responder = self._responder
            if isinstance(action, Fault):
                self.faults_served += 1
        if action is None:
            action = responder(body)  # outside the lock: responders may be slow or re-enter
        return action

    def _record_embedding(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.embedding_requests.append(body)
