"""A webhook receiver on 127.0.0.1 for tests and the bench: a small threaded ``http.server``
that verifies EVERY request's signature with ``standardwebhooks.Webhook.verify`` and answers as
told (a status, after a delay), so tests can make it fail (500), time out, answer slowly, or not
listen at all (a port nothing is bound to, then ``start`` on it: the receiver "recovers").

HTTP/1.0: one connection per request, so nothing lingers after ``stop``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Answer:
    status: int = 204
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    """One request as received (after its signature was checked)."""

    msg_id: str
    timestamp: str
    body: dict[str, Any]
    headers: dict[str, str]
    status: int
    """What the receiver answered (or meant to: a client that timed out never read it)."""
    at: float
    """``time.time()`` when the request had been read."""
    nth: int
    """1 for the first request with this ``webhook-id``, 2 for the next…"""


Behaviour = Callable[[str, int], Answer]
"""``(webhook-id, nth request with that id) → Answer``."""


class WebhookReceiver:
    def __init__(self, secret: str, *, port: int = 0, answer: Behaviour | None = None) -> None:
        self.webhook = Webhook(secret)
        self.port = port
        self.answer: Behaviour = answer or (lambda _id, _n: Answer())
        self.receipts: list[Receipt] = []
        self.bad_signatures: list[str] = []
        self.lock = threading.Condition()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/reverie?token=not-a-secret"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self._stop.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (the port refuses connections again); slow answers end at once."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()  # joins the handler threads
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        raw = request.rfile.read(int(request.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in request.headers.items()}
        msg_id = headers.get("webhook-id", "")
        try:
            body = self.webhook.verify(raw, headers)
        except (WebhookVerificationError, ValueError) as e:
            with self.lock:
                self.bad_signatures.append(f"{msg_id}: {type(e).__name__}: {e}")
                self.lock.notify_all()
            self._reply(request, Answer(401))
            return
        with self.lock:
            nth = 1 + sum(r.msg_id == msg_id for r in self.receipts)
            answer = self.answer(msg_id, nth)
            receipt = Receipt(msg_id, headers["webhook-timestamp"], body, headers, answer.status, time.time(), nth)
            self.receipts.append(receipt)
            self.lock.notify_all()
        if answer.delay_s:
            self._stop.wait(answer.delay_s)
        self._reply(request, answer)

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, answer: Answer) -> None:
        try:
            request.send_response(answer.status)
            for name, value in answer.headers.items():
                request.send_header(name, value)
            request.send_header("content-length", "0")
            request.end_headers()
        except OSError:  # the client gave up (its timeout): nothing to answer
            pass

    # -- what tests read ------------------------------------------------------------------------

    def ids(self) -> list[str]:
        with self.lock:
            return [r.msg_id for r in self.receipts]

    def accepted(self) -> dict[str, Receipt]:
        """``webhook-id`` → the first receipt answered with a 2xx."""
        with self.lock:
            out: dict[str, Receipt] = {}
            for r in self.receipts:
                if 200 <= r.status < 300:
                    out.setdefault(r.msg_id, r)
            return out

    def wait_for(self, predicate: Callable[[WebhookReceiver], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    summary = json.dumps([(r.msg_id, r.status, r.nth) for r in self.receipts])[-2000:]
                    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; receipts: {summary}")
                self.lock.wait(min(left, 0.1))
