"""Procedural memory wire formats: versioned system prompts and the examples that improve them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.ids import SafeId
from schemas.messages import Message

MAX_PROMPT_CHARS = 16_000


class PromptVersion(BaseModel):
    """One version of the system prompt of a named agent (``key``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = 1
    key: SafeId
    version: int = Field(ge=1)
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    rationale: str = Field(default="", max_length=4000)
    source: Literal["manual", "optimizer"] = "manual"
    examples_used: int = 0
    updated_ms: int


class PromptExample(BaseModel):
    """A past conversation of the agent, with optional feedback (``score`` in 0..1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: int = 1
    messages: list[Message] = Field(min_length=1, max_length=200)
    score: float | None = Field(default=None, ge=0, le=1)
    comment: str | None = Field(default=None, max_length=2000)
    recorded_ms: int = 0


class PromptProposal(BaseModel):
    """What the optimizer model must return (LangMem's single-call ``prompt_memory`` strategy)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="The complete improved system prompt.")
    rationale: str = Field(default="", max_length=2000, description="What changed and which feedback caused it.")
