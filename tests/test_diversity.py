"""Diversity clusters on real questions, and the balanced quota sampler the selection stage uses."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from problem_rows import DATA_ROOT, REAL_SOURCES, copy_problems, read_stage

from pipeline.ingest.sources import SourceConfig
from pipeline.ingest.stage import IngestConfig, IngestStage
from pipeline.io import StageDir, file_sha256
from pipeline.score.diversity import (
    ClusterCentroids,
    DiversityStageConfig,
    DiversityStage,
    embed,
    sample_rows,
)
from pipeline.select.balance import quota_sample, water_fill
from pipeline.stage import run_shard

CONFIG = DiversityStageConfig(clusters=6, sample_size=120, seed=3)


def ingest_sample(run_dir, per_source: int = 60) -> list[str]:
    sources = [SourceConfig(**{**s.model_dump(), "limit": per_source}) for s in REAL_SOURCES]
    stage = IngestStage(IngestConfig(shard_size=60), sources, DATA_ROOT)
    for shard in stage.shards():
        run_shard(stage, run_dir, shard)
    return stage.shards()


def cluster(run_dir, shards):
    index = ClusterCentroids(CONFIG).prepare(run_dir, shards)
    stage = DiversityStage(CONFIG, index)
    for shard in shards:
        run_shard(stage, run_dir, shard)
    return index


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    run = tmp_path_factory.mktemp("diversity")
    shards = ingest_sample(run)
    return run, shards, cluster(run, shards)


def test_embeddings_are_384_dimensional_unit_vectors():
    vectors = embed(["What is 3+4?", "Janet's ducks lay 16 eggs per day."], CONFIG)
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_real_questions_cluster_by_kind_of_problem(clustered):
    run, shards, _ = clustered
    rows = [{**p, **d} for p, d in zip(read_stage(run, "problems", shards), read_stage(run, "diversity", shards))]
    assert len(rows) == 120 and all(0 <= r["problem_cluster"] < CONFIG.clusters for r in rows)
    majority = {
        c: Counter(r["source"] for r in rows if r["problem_cluster"] == c).most_common(1)[0][0]
        for c in {r["problem_cluster"] for r in rows}
    }
    purity = np.mean([majority[r["problem_cluster"]] == r["source"] for r in rows])
    assert purity >= 0.75  # mostly by source (chance: 0.5); money and counting problems mix the two
    shopping = {
        r["problem_cluster"] for r in rows if "enough to buy" in r["question"] or "need to buy" in r["question"]
    }
    assert len(shopping) == 1  # "Does Vijay have enough to buy ...?": one topic, one cluster
    assert len(majority) == CONFIG.clusters


def test_clusters_and_assignments_are_deterministic(clustered, tmp_path):
    run, shards, index = clustered
    index_again = cluster(tmp_path, copy_problems(run, tmp_path))
    assert file_sha256(index_again / "centroids.npy") == file_sha256(index / "centroids.npy")
    for shard in shards:
        assert file_sha256(StageDir(tmp_path, "diversity").shard_path(shard)) == file_sha256(
            StageDir(run, "diversity").shard_path(shard)
        )
    assert ClusterCentroids(CONFIG).prepare(run, shards) == index  # reused, not refitted


def test_each_question_is_embedded_once_the_sample_reused_from_the_index(clustered, tmp_path):
    run, shards, _ = clustered
    half = CONFIG.model_copy(update={"sample_size": 50})
    copied = copy_problems(run, tmp_path)
    index = ClusterCentroids(half).prepare(tmp_path, copied)
    stage = DiversityStage(half, index)
    counts = Counter()
    for shard in copied:
        counts.update(run_shard(stage, tmp_path, shard).stats)
    assert counts["embeddings_reused"] == 50 and counts["embedded"] == 70  # 120 questions, each embedded once
    rows = read_stage(tmp_path, "diversity", copied)
    questions = [r["question"] for r in read_stage(tmp_path, "problems", copied)]
    fresh = embed(questions, half)  # the same vectors as one pass over every question would give
    assert np.allclose(np.array([r["embedding"] for r in rows]), fresh, atol=1e-5)


def test_the_k_means_sample_is_seeded_and_spans_all_shards():
    picks = sample_rows([100, 100, 50], 60, seed=1)
    assert sum(len(p) for p in picks) == 60 and all(len(p) for p in picks)
    assert all(np.array_equal(a, b) for a, b in zip(picks, sample_rows([100, 100, 50], 60, seed=1)))


# --- quota sampling -------------------------------------------------------------------------------


def test_water_fill_gives_small_groups_everything_and_splits_the_rest_evenly():
    assert water_fill(np.array([1000, 100, 10]), 300, np.arange(3)).tolist() == [190, 100, 10]
    assert water_fill(np.array([5, 5, 5]), 7, np.array([2, 0, 1])).tolist() == [2, 2, 3]  # group 2 is first in line
    assert water_fill(np.array([2, 3]), 50, np.arange(2)).tolist() == [2, 3]


def test_quota_sample_balances_each_level_and_caps_the_last():
    rng = np.random.default_rng(0)
    domain = np.repeat(["table_math", "arithmetic_word", "geometry"], [6000, 3000, 300])
    source = np.where(rng.random(len(domain)) < 0.8, "big", "small")
    cluster = rng.integers(0, 10, len(domain))
    picked = quota_sample([domain, source, cluster], 1500, seed=7, max_per_group=40)
    assert len(picked) == len(set(picked.tolist())) == 1500
    per_domain = Counter(domain[picked].tolist())
    assert per_domain["geometry"] == 300 and per_domain["table_math"] == per_domain["arithmetic_word"] == 600
    leaves = Counter(zip(domain[picked].tolist(), source[picked].tolist(), cluster[picked].tolist()))
    assert max(leaves.values()) <= 40
    table = Counter(source[picked][domain[picked] == "table_math"].tolist())
    assert table["big"] == table["small"] == 300  # sources share their domain's quota evenly


def test_quota_sample_is_seeded_and_deterministic():
    keys = [np.repeat(["a", "b"], [500, 50]), np.arange(550) % 7]
    first = quota_sample(keys, 200, seed=1)
    assert np.array_equal(first, quota_sample(keys, 200, seed=1))
    other = quota_sample(keys, 200, seed=2)
    assert not np.array_equal(first, other)
    assert Counter(keys[0][first].tolist()) == Counter(keys[0][other].tolist()) == {"a": 150, "b": 50}
    assert len(quota_sample(keys, 10_000, seed=1)) == 550  # more than there is: everything
