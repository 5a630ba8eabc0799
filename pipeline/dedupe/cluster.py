"""Global clustering over all rows' signatures: exact groups, image groups, near-duplicate clusters.

Two rows may be merged only when their answer keys (normalised gold answer + choice set), number
multisets and image groups are equal. These three keys salt every LSH bucket key, so rows that differ
in any of them never even become a candidate pair, and every verified pair is checked again; as
equality is transitive, no cluster can ever hold two different answers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.dedupe.config import DedupeConfig
from pipeline.dedupe.imagehash import image_groups
from pipeline.dedupe.minhash import bucket_pairs, estimated_jaccard, first_of_runs, salted, sorted_distinct, unique_pairs
from pipeline.dedupe.unionfind import UnionFind
from pipeline.text import fmix64, key64


@dataclass
class Rows:
    """Per-row arrays of every problem row, in (shard, row) order."""

    exact_key: np.ndarray  # int64
    answer_key: np.ndarray  # int64
    numbers_key: np.ndarray  # int64
    image_key: np.ndarray  # int64, 0 when the row has no image
    band_keys: np.ndarray  # (rows, bands) uint64 unsalted LSH keys: half a signature's bytes
    rank: np.ndarray  # int64 representative preference, 0 first
    # (rows, num_perm) uint32 MinHash signatures of the given sorted row indices: only candidate pairs
    # need them, so they stay on disk instead of 512 bytes a row in memory.
    signatures_of: Callable[[np.ndarray], np.ndarray]


@dataclass
class Clusters:
    exact_rep: np.ndarray  # row index of the representative of the row's exact group
    near_rep: np.ndarray  # row index of the representative of the row's near-duplicate cluster
    stats: Counter


def representative_rank(
    solution_chars: pa.Array, source: pa.Array, source_id: pa.Array, problem_id: pa.Array
) -> np.ndarray:
    """The rule: the longest reference solution first, then the smallest (source, source_id, problem_id);
    a stable sort leaves full ties (the same problem twice in one source) in row order."""
    table = pa.table(
        {"minus_chars": pc.negate(solution_chars), "source": source, "source_id": source_id, "problem_id": problem_id}
    )
    order = pc.sort_indices(table, sort_keys=[(name, "ascending") for name in table.column_names]).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def row_image_keys(
    image_offsets: np.ndarray, image_index: np.ndarray, hashes: np.ndarray, aspects: np.ndarray, config: DedupeConfig
) -> tuple[np.ndarray, np.ndarray, int]:
    """Per row: an int64 key of its images' near-duplicate groups (0 without images), the group root of
    every distinct image, and the number of verified image pairs.

    `image_index` maps each image occurrence (rows' images back to back, row i owning
    image_index[image_offsets[i]:image_offsets[i+1]]) to its distinct image (by sha256).
    """
    roots, pairs = image_groups(
        hashes,
        aspects,
        bands=config.image_bands,
        max_distance=config.image_max_distance,
        max_aspect_change=config.image_max_aspect_change,
        max_all_pairs=config.max_all_pairs,
    )
    occurrence_root = roots[image_index]
    keys = np.zeros(len(image_offsets) - 1, dtype=np.int64)
    for row in np.flatnonzero(np.diff(image_offsets)):
        members = occurrence_root[image_offsets[row] : image_offsets[row + 1]]
        keys[row] = key64(",".join(map(str, members.tolist())))
    return keys, roots, pairs


def _group_representatives(group_keys: list[np.ndarray], rank: np.ndarray) -> np.ndarray:
    """For each row, the row of lowest rank with the same group keys."""
    order = np.lexsort((rank, *reversed(group_keys)))
    start = first_of_runs([k[order] for k in group_keys])
    rep = np.empty(len(rank), dtype=np.int64)
    rep[order] = order[np.flatnonzero(start)][np.cumsum(start) - 1]
    return rep


def _candidate_pairs(rows: Rows, reps: np.ndarray, config: DedupeConfig) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (as positions in `reps`) that share at least one LSH bucket. Bucket keys are salted with
    the answer, numbers and image keys: rows that differ in any of them never meet."""
    with np.errstate(over="ignore"):
        salt = (
            fmix64(rows.answer_key[reps].view(np.uint64))
            ^ fmix64(rows.numbers_key[reps].view(np.uint64) + np.uint64(1))
            ^ fmix64(rows.image_key[reps].view(np.uint64) + np.uint64(2))
        ).view(np.int64)
    rank = rows.rank[reps]

    # One band at a time: a salted copy of every band at once would double the peak.
    def band_pairs(band: int) -> tuple[np.ndarray, np.ndarray]:
        return bucket_pairs(salted(rows.band_keys[reps, band : band + 1], salt)[:, 0], rank, config.max_all_pairs)

    return unique_pairs(band_pairs(band) for band in range(config.bands))


def cluster_rows(rows: Rows, config: DedupeConfig) -> Clusters:
    """Exact groups (same exact key and answer key), then near-duplicate clusters of their
    representatives: LSH candidates, verified by keys and estimated Jaccard, joined by union-find."""
    stats: Counter = Counter(rows=len(rows.rank))
    exact_rep = _group_representatives([rows.exact_key, rows.answer_key], rows.rank)
    conflicted = _group_representatives([rows.exact_key], rows.rank)
    stats["exact_groups_split_by_answer"] = len(sorted_distinct(exact_rep)) - len(sorted_distinct(conflicted))
    reps = sorted_distinct(exact_rep)
    stats["exact_groups"] = len(reps)
    left, right = _candidate_pairs(rows, reps, config)
    stats["candidate_pairs"] = len(left)
    a, b = reps[left], reps[right]
    compatible = (
        (rows.answer_key[a] == rows.answer_key[b])
        & (rows.numbers_key[a] == rows.numbers_key[b])
        & (rows.image_key[a] == rows.image_key[b])
    )
    members = sorted_distinct(np.concatenate([a, b]))
    signature = rows.signatures_of(members)
    jaccard = estimated_jaccard(signature, np.searchsorted(members, a), np.searchsorted(members, b))
    similar = jaccard >= config.jaccard_threshold
    stats["pairs_rejected_incompatible"] = int((~compatible).sum())
    stats["pairs_rejected_jaccard"] = int((compatible & ~similar).sum())
    verified = compatible & similar
    stats["pairs_verified"] = int(verified.sum())
    components = UnionFind(len(reps))
    components.union_pairs(left[verified], right[verified])
    best_of_component = _group_representatives([components.roots()], rows.rank[reps])
    near_rep_of_rep = reps[best_of_component]
    near_rep = near_rep_of_rep[np.searchsorted(reps, exact_rep)]
    stats["near_clusters"] = len(sorted_distinct(near_rep))
    stats["exact_duplicates"] = int((exact_rep != np.arange(len(exact_rep))).sum())
    stats["near_duplicates"] = stats["exact_groups"] - stats["near_clusters"]
    return Clusters(exact_rep=exact_rep, near_rep=near_rep, stats=stats)
