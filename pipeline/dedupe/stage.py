"""Dedupe: `DedupeIndex` clusters all shards once; `DedupeStage` writes each shard's annotation.

Layout under the run folder:
    dedupe_index/signatures/<shard>.parquet   per-shard signatures (+ .done markers), reused across
                                              configs that share the signature settings
    dedupe_index/<key>/parts/<shard>.parquet  the annotation of every shard, aligned with problems
    dedupe_index/<key>/manifest.json          written last (see pipeline/index.py)
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.dedupe.cluster import Clusters, Rows, cluster_rows, representative_rank, row_image_keys
from pipeline.dedupe.config import DedupeConfig
from pipeline.dedupe.minhash import band_keys, sorted_distinct
from pipeline.dedupe.signatures import PROBLEM_COLUMNS, shard_signatures, signature_schema
from pipeline.index import GlobalStep, IndexedStage
from pipeline.io import StageDir, stable_hash, write_parquet_atomic
from pipeline.stage import ShardResult

log = logging.getLogger(__name__)

DEDUPE_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("exact_cluster", pa.string()),  # problem_id of the representative of the exact-duplicate group
        ("near_cluster", pa.string()),  # problem_id of the representative of the near-duplicate cluster
        ("image_cluster", pa.string()),  # sha256 of each image's group root, comma-joined; null: no image
        ("cluster_size", pa.int32()),  # rows in the near-duplicate cluster
        ("is_representative", pa.bool_()),  # the one row of its cluster that selection keeps
        ("duplicate_of", pa.string()),  # null for representatives, else near_cluster
        ("duplicate_kind", pa.string()),  # null, "exact" (same exact group as the kept row) or "near"
    ]
)


def _signature_dir(run_dir: Path) -> StageDir:
    return StageDir(Path(run_dir) / "dedupe_index", "signatures")


def _signature_hash(config: DedupeConfig, problems_sha: str) -> str:
    return stable_hash(["dedupe-signatures", config.signature_identity(), problems_sha])


def _write_signatures(run_dir: Path, shard: str, config_json: str) -> None:
    """One shard's signatures (a process-pool task: arguments are plain values)."""
    config = DedupeConfig.model_validate_json(config_json)
    problems = StageDir(run_dir, "problems")
    config_hash = _signature_hash(config, problems.finished(shard).content_sha256)
    out = _signature_dir(run_dir)
    if not out.is_done(shard, config_hash):
        table = shard_signatures(problems.read(shard, columns=PROBLEM_COLUMNS), config)
        out.write(shard, table, config_hash, {"rows": table.num_rows})


def _ensure_signatures(run_dir: Path, shards: Sequence[str], config: DedupeConfig) -> None:
    arguments = [(run_dir, shard, config.model_dump_json()) for shard in shards]
    if config.workers <= 1:
        for args in arguments:
            _write_signatures(*args)
        return
    # spawn, not fork: the caller may be a threaded flow runner.
    with ProcessPoolExecutor(config.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_write_signatures, *zip(*arguments)))


def _load_rows(run_dir: Path, shards: Sequence[str], config: DedupeConfig) -> tuple[Rows, pa.Table, list[int], Counter]:
    """All rows' keys and unsalted LSH band keys (one preallocated array, filled shard by shard), their
    id columns (+ image_cluster), the shard boundaries, and image statistics."""
    signatures = _signature_dir(run_dir)
    sizes = [signatures.finished(shard).rows for shard in shards]
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64).tolist()
    keys = np.empty((bounds[-1], config.bands), dtype=np.uint64)
    columns = ["problem_id", "source", "source_id", "solution_chars", "exact_key", "answer_key", "numbers_key"]
    tables = [signature_schema(config).empty_table().drop_columns(["minhash"])]  # typed even with no rows
    for shard, start, stop in zip(shards, bounds, bounds[1:]):
        table = signatures.read(shard)
        keys[start:stop] = band_keys(_signature_matrix(table, config), config.bands)
        tables.append(table.drop_columns(["minhash"]))
    merged = {
        name: column.combine_chunks() for name, column in zip(tables[0].column_names, pa.concat_tables(tables).columns)
    }
    del tables
    image_key, image_cluster, stats = _image_groups(merged, config)
    ids = pa.table({name: merged[name] for name in columns}).append_column("image_cluster", image_cluster)
    rank = representative_rank(*(merged[n] for n in ("solution_chars", "source", "source_id", "problem_id")))
    rows = Rows(
        exact_key=merged["exact_key"].to_numpy(),
        answer_key=merged["answer_key"].to_numpy(),
        numbers_key=merged["numbers_key"].to_numpy(),
        image_key=image_key,
        band_keys=keys,
        rank=rank,
        signatures_of=functools.partial(_read_signatures, signatures, shards, bounds, config),
    )
    return rows, ids, bounds, stats


def _signature_matrix(table: pa.Table, config: DedupeConfig) -> np.ndarray:
    return table.column("minhash").combine_chunks().values.to_numpy().reshape(-1, config.num_perm)


def _read_signatures(
    signatures: StageDir, shards: Sequence[str], bounds: list[int], config: DedupeConfig, rows: np.ndarray
) -> np.ndarray:
    """The signatures of sorted global row indices, read back from only the shards that hold them."""
    out = np.empty((len(rows), config.num_perm), dtype=np.uint32)
    cuts = np.searchsorted(rows, bounds)
    for shard, start, lo, hi in zip(shards, bounds, cuts, cuts[1:]):
        if hi > lo:
            matrix = _signature_matrix(signatures.read(shard, columns=["minhash"]), config)
            out[lo:hi] = matrix[rows[lo:hi] - start]
    return out


def _image_groups(columns: Mapping[str, pa.Array], config: DedupeConfig) -> tuple[np.ndarray, pa.Array, Counter]:
    """Per row: its image key for clustering and its `image_cluster` value; distinct images are the
    distinct sha256s, each hashed once (its first occurrence)."""
    image_offsets = columns["image_sha256"].offsets.to_numpy().astype(np.int64)
    encoded = columns["image_sha256"].flatten().dictionary_encode()
    image_index = encoded.indices.to_numpy().astype(np.int64)
    first = np.full(len(encoded.dictionary), len(image_index), dtype=np.int64)
    np.minimum.at(first, image_index, np.arange(len(image_index)))
    words = config.phash_size**2 // 64
    packed = b"".join(columns["image_phash"].flatten().to_pylist())
    hashes = np.frombuffer(packed, dtype=">u8").reshape(-1, words).astype(np.uint64)[first]
    aspects = columns["image_aspect"].flatten().to_numpy()[first]
    image_key, roots, pairs = row_image_keys(image_offsets, image_index, hashes, aspects, config)
    root_sha = encoded.dictionary.take(pa.array(roots)).take(pa.array(image_index))
    per_row = pa.ListArray.from_arrays(pa.array(image_offsets, pa.int32()), root_sha)
    image_cluster = pc.if_else(pc.equal(pc.list_value_length(per_row), 0), None, pc.binary_join(per_row, ","))
    stats = Counter(
        images=len(image_index),
        distinct_images=len(first),
        image_groups=len(sorted_distinct(roots)),
        image_pairs_verified=pairs,
    )
    return image_key, image_cluster, stats


def _annotation(
    ids: pa.Table, clusters: Clusters, exact_key: np.ndarray, sizes: np.ndarray, start: int, stop: int
) -> pa.Table:
    rows = np.arange(start, stop)
    near = clusters.near_rep[start:stop]
    problem_id = ids.column("problem_id")
    representative = near == rows
    kind = np.where(exact_key[rows] == exact_key[near], "exact", "near")
    near_cluster = problem_id.take(pa.array(near))
    return pa.table(
        {
            "problem_id": problem_id.slice(start, stop - start),
            "exact_cluster": problem_id.take(pa.array(clusters.exact_rep[start:stop])),
            "near_cluster": near_cluster,
            "image_cluster": ids.column("image_cluster").slice(start, stop - start),
            "cluster_size": pa.array(sizes[near], pa.int32()),
            "is_representative": pa.array(representative),
            "duplicate_of": pc.if_else(pa.array(representative), None, near_cluster),
            "duplicate_kind": pa.array(kind, pa.string(), mask=representative),  # null for representatives
        },
        schema=DEDUPE_SCHEMA,
    )


class DedupeIndex(GlobalStep[DedupeConfig]):
    """Clusters every row of the problems shards at once; one annotation part per shard."""

    name = "dedupe"
    upstream = ("problems",)

    def build(self, run_dir: Path, shards: Sequence[str], staging: Path) -> dict:
        config, shards = self.config, sorted(shards)
        started = time.perf_counter()
        _ensure_signatures(run_dir, shards, config)
        signed = time.perf_counter()
        rows, ids, bounds, stats = _load_rows(run_dir, shards, config)
        loaded = time.perf_counter()
        clusters = cluster_rows(rows, config)
        stats.update(clusters.stats)
        clustered = time.perf_counter()
        sizes = np.bincount(clusters.near_rep, minlength=len(clusters.near_rep))
        for shard, start, stop in zip(shards, bounds, bounds[1:]):
            write_parquet_atomic(staging / "parts" / f"{shard}.parquet", _annotation(ids, clusters, rows.exact_key, sizes, start, stop))
        log.info(
            "dedupe index: %d rows; signatures %.1f s (%d workers), load + image groups %.1f s, "
            "clustering %.1f s, writing %d parts %.1f s",
            len(rows.rank),
            signed - started,
            config.workers,
            loaded - signed,
            clustered - loaded,
            len(shards),
            time.perf_counter() - clustered,
        )
        return {"stats": dict(stats)}


class DedupeStage(IndexedStage[DedupeConfig]):
    name = "dedupe"
    inputs = ("problems",)
    output_schema = DEDUPE_SCHEMA

    def process(self, shard: str, inputs: Mapping[str, pa.Table]) -> ShardResult:
        if f"parts/{shard}.parquet" not in self.manifest["files"]:
            raise KeyError(f"dedupe: {shard} is not in the index {self.index_dir}; prepare it over every shard")
        table = pq.read_table(self.index_dir / "parts" / f"{shard}.parquet")
        if not table.column("problem_id").equals(inputs["problems"].column("problem_id")):
            raise ValueError(f"dedupe: index part {shard} is not aligned with problems/{shard}")
        kinds = Counter(table.column("duplicate_kind").to_pylist())
        stats = Counter(
            representatives=kinds.pop(None, 0),
            exact_duplicates=kinds["exact"],
            near_duplicates=kinds["near"],
        )
        return ShardResult(table, [], stats)
