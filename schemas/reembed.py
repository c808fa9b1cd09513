"""Re-embedding wire formats: the checkpoint kept in Redis, the task's arguments, its results.

Ids, names and counts only: a checkpoint never holds memory content.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.errors import DecodeError

Phase = Literal["copy", "catchup", "switched", "done"]
"""``copy``: bulk copy, resumable at ``offset``; ``catchup``: copy done, change events replayed
into the new collection (and one full comparison) until it matches the old one; ``switched``: the
live alias names the new collection, events replayed until every process has followed it;
``done``: finished, the old collection kept until ``--drop-old``."""

MAX_BATCH = 2048
"""Texts per embedding call (OpenAI's embeddings API takes at most 2048 inputs per request)."""


class StreamCursor(BaseModel):
    """How far the change events of one stream have been replayed: the last entry id read, and
    the stream's ``entries-added`` counter at that entry (a gap means entries were trimmed)."""

    model_config = ConfigDict(extra="forbid")

    last_id: str = "0-0"
    added: int = 0


class ReembedState(BaseModel):
    """The checkpoint of one namespace's re-embed (``p:reembed:<namespace>``), written after every
    batch and every pass, so that running the command again continues where it stopped."""

    model_config = ConfigDict(extra="forbid")

    v: int = 1
    namespace: str
    source: str
    source_model: str
    target: str
    target_model: str
    batch_size: int = Field(ge=1, le=MAX_BATCH)
    phase: Phase = "copy"
    offset: str | int | None = None
    """Where the bulk copy's scroll continues (a point id); None: from the start, or finished."""
    total: int = 0
    """Memories in the old collection when the copy started (the progress bar's end)."""
    copied: int = 0
    caught_up: int = 0
    """Memories copied again or removed because they changed during the re-embed."""
    cursors: dict[str, StreamCursor] = Field(default_factory=dict)
    compared: bool = False
    """The whole comparison before the switch is done (not repeated when a run continues)."""
    started_ms: int = 0
    switched_ms: int = 0
    finished_ms: int = 0
    old: list[str] = Field(default_factory=list)
    """Collections nothing reads any more, kept until ``--drop-old`` (this re-embed's source once
    it is done, and those of earlier re-embeds not dropped yet)."""

    def encode(self) -> str:
        return self.model_dump_json()

    @classmethod
    def decode(cls, raw: bytes | str) -> ReembedState:
        try:
            return cls.model_validate_json(raw)
        except ValidationError as e:
            raise DecodeError("the re-embed checkpoint is not a ReembedState") from e


class ReembedArgs(BaseModel):
    """Arguments of the ``reverie.reembed`` Celery task (and of ``reverie reembed``): exactly one
    of ``to`` (start or continue a re-embed), ``drop_old`` and ``abort``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: str | None = Field(default=None, min_length=1, max_length=200)
    batch_size: int = Field(default=64, ge=1, le=MAX_BATCH)
    dry_run: bool = False
    drop_old: bool = False
    abort: bool = False

    @model_validator(mode="after")
    def _one_action(self) -> ReembedArgs:
        if sum((self.to is not None, self.drop_old, self.abort)) != 1:
            raise ValueError("give exactly one of --to MODEL, --drop-old or --abort (task: to, drop_old, abort)")
        return self


class ReembedEstimate(BaseModel):
    """What ``--dry-run`` prints: the work and its embedding cost, before anything is written."""

    source: str
    source_model: str
    target: str
    target_model: str
    memories: int
    users: int
    batch_size: int
    batches: int
    tokens: int
    """Estimated input tokens of the embedding calls (litellm's tokenizer for hosted models)."""
    cost_usd: float | None
    """From litellm's cost map (offline with ``LITELLM_LOCAL_MODEL_COST_MAP=True``); 0 for the
    in-wheel models; None when the map does not know the model."""


class ReembedReport(BaseModel):
    """A run's outcome (the task's result): where it stands, counts only."""

    phase: Phase | Literal["aborted", "dropped"]
    source: str = ""
    target: str = ""
    copied: int = 0
    caught_up: int = 0
    seconds: float = 0.0
    continued: bool = False
    """The run stopped at its time budget (and, as a task, sent ``next_task_id`` to continue)."""
    next_task_id: str = ""
    dropped: list[str] = Field(default_factory=list)
