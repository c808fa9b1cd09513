"""A minimal chat server that remembers its users through Reverie.

One endpoint, ``POST /chat``:

1. **Hot path read**: search the user's memories with Reverie's read client
   (``producer.memories``: user-filtered, a few ms on a Qdrant server).
2. Put them into the system prompt and call the configured model through litellm.
3. **Fire and forget**: hand both turns to Reverie with ``AsyncProducer`` in a background task
   and answer without waiting. With Redis down the producer's default ``drop`` policy logs a
   warning and returns; the user still gets an answer, only this exchange is not remembered.

Configuration is Reverie's (``REVERIE_*``: model, Redis, Qdrant). Run it with
``uvicorn examples.chat_server.app:app`` (``pip install 'reverie[examples]'``). It keeps no chat
history of its own: a real app would send the thread's recent turns to the model as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import structlog
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from producer import AsyncProducer, ProducerConfig
from producer.memories import MemoryReader, open_reader
from schemas.ids import SafeId
from schemas.settings import Settings

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm must not fetch prices at import
log = structlog.get_logger("reverie.chat")
MEMORIES_IN_PROMPT = 5
SUBMIT_DRAIN_S = 5.0
SYSTEM_PROMPT = "You are a friendly assistant. Use what you know about the user when it helps."


class ChatRequest(BaseModel):
    user_id: SafeId
    thread_id: SafeId
    message: str = Field(min_length=1, max_length=32 * 1024)
    message_id: SafeId | None = None


class ChatResponse(BaseModel):
    reply: str
    memories_used: int


def system_prompt(memories: list[str]) -> str:
    """The system prompt with the user's memories as a bullet list (pure, tested directly)."""
    if not memories:
        return SYSTEM_PROMPT
    facts = "\n".join(f"- {m}" for m in memories)
    return f"{SYSTEM_PROMPT}\n\nWhat you know about the user:\n{facts}"


class ChatService:
    def __init__(self, settings: Settings, reader: MemoryReader, producer: AsyncProducer) -> None:
        self.settings = settings
        self.reader = reader
        self.producer = producer
        self.pending: set[asyncio.Task[Any]] = set()

    async def recall(self, user_id: str, text: str) -> list[str]:
        try:
            hits = await run_in_threadpool(self.reader.search, user_id, text, limit=MEMORIES_IN_PROMPT)
        except Exception as e:  # memory is an extra: answer without it rather than fail
            log.warning("memory search failed", user_id=user_id, error=type(e).__name__)
            return []
        return [h.content for h in hits]

    async def complete(self, prompt: str, message: str) -> str:
        import litellm  # the chat app's own model call; Reverie's workers do the memory work

        s = self.settings
        response = await litellm.acompletion(
            model=s.model,
            messages=[{"role": "system", "content": prompt}, {"role": "user", "content": message}],
            api_base=s.llm_api_base,
            api_key=s.llm_api_key.get_secret_value() if s.llm_api_key else None,
            timeout=s.llm_timeout_s,
        )
        return response.choices[0].message.content or ""

    def remember(self, req: ChatRequest, reply: str) -> None:
        """Submit both turns in the background; the response never waits for Redis."""
        user_msg_id = req.message_id or uuid.uuid4().hex
        turns = [
            {"role": "user", "content": req.message, "id": user_msg_id},
            {"role": "assistant", "content": reply, "id": f"{user_msg_id}.reply"},
        ]
        task = asyncio.create_task(self._submit(req.user_id, req.thread_id, turns))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _submit(self, user_id: str, thread_id: str, turns: list[dict[str, str]]) -> None:
        try:
            receipt = await self.producer.submit(user_id, thread_id, turns)
        except Exception as e:  # policy "raise" or a bug: never let it reach the chat user
            log.warning("submit failed", user_id=user_id, thread_id=thread_id, error=type(e).__name__)
            return
        log.debug("submitted", user_id=user_id, thread_id=thread_id, status=receipt.status)

    async def drain(self) -> None:
        if self.pending:
            await asyncio.wait(self.pending, timeout=SUBMIT_DRAIN_S)


def producer_config(settings: Settings) -> ProducerConfig:
    return ProducerConfig.from_settings(settings, redis_url=settings.resolved_redis_url() or "redis://127.0.0.1:6379/0")


def create_app(settings: Settings | None = None, *, reader: MemoryReader | None = None) -> FastAPI:
    """The FastAPI app. ``reader`` lets a caller share an open read client (local-mode Qdrant
    allows one client per folder); otherwise one is opened from the settings at start-up."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        s = settings or Settings()
        own_reader = reader is None
        memory_reader = reader or open_reader(s)
        producer = AsyncProducer(producer_config(s))
        app.state.chat = ChatService(s, memory_reader, producer)
        try:
            yield
        finally:
            await app.state.chat.drain()
            await producer.aclose()
            if own_reader:
                memory_reader.close()

    app = FastAPI(title="Reverie example chat server", lifespan=lifespan)

    @app.post("/chat", response_model=ChatResponse)
    async def chat(req: ChatRequest) -> ChatResponse:
        service: ChatService = app.state.chat
        if not service.settings.model:
            raise HTTPException(503, "no model configured: set REVERIE_MODEL")
        memories = await service.recall(req.user_id, req.message)
        try:
            reply = await service.complete(system_prompt(memories), req.message)
        except Exception as e:
            log.warning("model call failed", user_id=req.user_id, error=type(e).__name__)
            raise HTTPException(502, "the model did not answer") from None
        service.remember(req, reply)
        return ChatResponse(reply=reply, memories_used=len(memories))

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    return app


app = create_app()
