"""Checking a re-embed request before anything is written, and ``--dry-run``'s estimate.

A model is accepted when it is one of the in-wheel models (``use-m3``, ``e5-small``), a valid
``hash-<dims>``, an embedding model litellm's model map knows, or any name when an embedding API
base is configured (a self-hosted OpenAI-compatible server). A real run then embeds one probe
text, so a model that does not work here (missing extra, unreachable server, bad key) is refused
before the new collection exists.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from producer.memories.embeddings import Embedder, LiteLLMEmbedder
from producer.memories.embeddings.hashing import MAX_DIMS, MIN_DIMS
from producer.memories.embeddings.local import LOCAL_MODELS
from producer.memories.live import LIVE
from schemas.reembed import ReembedEstimate
from worker.features.reembed.errors import ReembedRefused
from worker.features.reembed.transfer import Transfer
from worker.observability.logs import redact

PAGE = 1024


def _litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline cost map
    import litellm

    litellm.suppress_debug_info = True  # no "Provider List" banner for an unknown model
    return litellm


def hosted_info(model: str) -> dict[str, Any] | None:
    """litellm's model-map entry of a hosted model, or None if the map does not know it."""
    try:
        return dict(_litellm().get_model_info(model))
    except Exception:  # litellm raises a bare Exception for unmapped models
        return None


def check_model(model: str, factory: Callable[[str], Embedder], *, custom_base: bool, probe: bool) -> Embedder:
    """The embedder of ``model``, or ``ReembedRefused`` naming what is wrong with it."""
    if model != model.strip() or not model:
        raise ReembedRefused(f"--to: model name {model!r} has surrounding spaces or is empty")
    if model == LIVE:
        raise ReembedRefused("--to: 'live' is reserved (it names the live collection alias)")
    if model.startswith("hash-"):
        dims = model.removeprefix("hash-")
        if not dims.isdigit() or not MIN_DIMS <= int(dims) <= MAX_DIMS:
            raise ReembedRefused(f"--to: {model!r}: hash-<dims> needs {MIN_DIMS} <= dims <= {MAX_DIMS}")
    elif model not in LOCAL_MODELS:
        info = hosted_info(model)
        if info is None and not custom_base:
            raise ReembedRefused(
                f"--to: unknown embedding model {model!r}: not an in-wheel model ({', '.join(sorted(LOCAL_MODELS))}), "
                "not hash-<dims>, and litellm's model map does not know it (for a self-hosted server set "
                "REVERIE_EMBEDDING_API_BASE)"
            )
        if info is not None and info.get("mode") not in (None, "embedding"):
            raise ReembedRefused(
                f"--to: {model!r} is a {info.get('mode')} model in litellm's map, not an embedding model"
            )
    embedder = factory(model)
    if probe:
        try:
            load = getattr(embedder, "load", None)
            if load is not None:
                load()
            embedder.embed(["reverie re-embed probe"])
        except Exception as e:
            detail = redact(f"{type(e).__name__}: {e}")[:300]
            raise ReembedRefused(f"--to: embedding model {model!r} does not work here ({detail})") from None
    return embedder


def estimate(
    transfer: Transfer, source_model: str, target_model: str, embedder: Embedder, batch: int
) -> ReembedEstimate:
    """Count memories and users and estimate the embedding calls' tokens and cost (one read-only
    pass over the old collection's payloads)."""
    hosted = isinstance(embedder, LiteLLMEmbedder)
    tokens, memories, users = 0, 0, set()
    offset: Any = None
    while True:
        points, offset = transfer.page(transfer.source, offset, PAGE)
        memories += len(points)
        for p in points:
            users.add((p.payload or {}).get("user_id"))
            if hosted:
                tokens += int(
                    _litellm().token_counter(model=target_model, text=str((p.payload or {}).get("content", "")))
                )
        if offset is None or not points:
            break
    cost: float | None = 0.0
    if hosted:
        info = hosted_info(target_model)
        price = (info or {}).get("input_cost_per_token")
        cost = None if price is None else tokens * float(price)
    return ReembedEstimate(
        source=transfer.source,
        source_model=source_model,
        target=transfer.target,
        target_model=target_model,
        memories=memories,
        users=len(users - {None}),
        batch_size=batch,
        batches=math.ceil(memories / batch),
        tokens=tokens,
        cost_usd=cost,
    )
