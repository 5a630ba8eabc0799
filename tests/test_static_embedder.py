"""The static embedder (diversity.embedder = "static"): distilled with model2vec from the configured model,
cached once per machine. A tiny BERT built from a config stands in for MiniLM, so this runs offline in seconds."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.paths import CACHE_ENV
from pipeline.score import diversity
from pipeline.score.diversity import ClusterCentroids, DiversityStageConfig, embed, nearest, static_model

WORDS = (
    "what is the sum of and how many apples eggs does janet have left after she sells buys each day per "
    "table shows area triangle circle radius angle degrees price total cost dollars cents number numbers "
    "more less than equal find value x y"
).split()
QUESTIONS = [
    "What is the sum of 3 and 4?",
    "How many eggs does Janet have left after she sells 3 each day?",
    "The table shows the price of apples: find the total cost in dollars.",
    "Find the area of the triangle.",
    "What is the radius of the circle?",
    "",  # no token at all
    "日本語",  # only characters outside the vocabulary
]


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    """A 1-layer BERT (hidden 32) with a ~90-token word-piece vocabulary, saved as a transformers folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"0123456789", *"?:.,$", "a", "##a", "##s", "##es", "##ed"]  # model2vec probes "aaa…" for word pieces
    vocab = {token: i for i, token in enumerate(dict.fromkeys(vocab))}
    BertTokenizer(vocab=vocab).save_pretrained(folder)  # a fast (tokenizers) word-piece tokenizer
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture
def static_config(tiny_teacher, tmp_path, monkeypatch):
    """The static embedder on the tiny teacher, with a fresh cache and a count of distillations."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    distilled = []
    real = diversity._distill
    monkeypatch.setattr(diversity, "_distill", lambda *a: (distilled.append(a), real(*a)))
    yield DiversityStageConfig(embedder="static", model_path=str(tiny_teacher), static_dims=16), distilled


def test_static_embeddings_are_float32_unit_vectors_of_the_configured_size(static_config):
    config, _ = static_config
    vectors = embed(QUESTIONS, config)
    assert vectors.shape == (len(QUESTIONS), 16) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)  # the empty and unknown texts too
    assert embed([], config).shape == (0, 16)
    assert not np.allclose(vectors[0], vectors[1])


def test_static_embeddings_are_deterministic_and_the_model_is_distilled_once(static_config, tmp_path):
    config, distilled = static_config
    first = embed(QUESTIONS, config)
    folder = static_model(config)
    assert folder.parent == tmp_path / "cache" / "static-embedders" and (folder / "model.safetensors").exists()
    assert [p.name for p in folder.parent.iterdir() if not p.name.endswith(".lock")] == [folder.name]  # no staging left
    again = embed(QUESTIONS, config)  # loads the model again, from the cache
    assert first.tobytes() == again.tobytes()
    assert len(distilled) == 1  # the second call found the cached model
    other = config.model_copy(update={"static_dims": 8})  # other settings: another cache entry
    assert embed(QUESTIONS[:2], other).shape == (2, 8) and len(distilled) == 2 and static_model(other) != folder


def test_the_embedder_is_part_of_the_cluster_index_identity(static_config):
    config, distilled = static_config
    minilm = config.model_copy(update={"embedder": "minilm"})
    assert ClusterCentroids(config).identity() != ClusterCentroids(minilm).identity()
    assert ClusterCentroids(config).identity() != ClusterCentroids(config.model_copy(update={"static_dims": 8})).identity()
    assert ClusterCentroids(config).identity() == ClusterCentroids(config.model_copy(update={"batch_size": 7})).identity()
    assert not distilled  # the identity names the model by content; it distills nothing


def test_static_vectors_assign_to_centroids_like_minilm_ones(static_config):
    config, _ = static_config
    vectors = embed(QUESTIONS[:5] * 4, config)
    cluster, distance = nearest(vectors, vectors[:5])
    assert cluster.tolist() == list(range(5)) * 4 and np.allclose(distance, 0, atol=1e-3)


def test_concurrent_builders_distill_once_and_a_killed_builders_staging_is_cleared(static_config, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    config, distilled = static_config
    target = diversity.static_model_folder(config)
    stale = target.parent / f".{target.name}.killed"  # what a builder killed mid-distill leaves
    (stale / "model").mkdir(parents=True)
    with ThreadPoolExecutor(3) as pool:
        folders = list(pool.map(lambda _: static_model(config), range(3)))
    assert folders == [target] * 3 and len(distilled) == 1
    assert not stale.exists() and (target / "distilled_from.json").exists()
