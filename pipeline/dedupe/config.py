"""Dedupe settings; the defaults are the measured ones (see benchmarks/bench_dedupe.py)."""

from __future__ import annotations

from pydantic import model_validator

from pipeline.config_base import StrictConfig, runtime


class DedupeConfig(StrictConfig):
    # Text near-dedupe. Character 5-grams of the normalised text keep a one-word edit of a 10-word
    # question above Jaccard 0.6 (word 3-grams drop it to ~0.4); 32 bands x 4 rows put a pair at
    # Jaccard 0.6 in a shared bucket with probability 0.99.
    shingle_chars: int = 5
    num_perm: int = 128
    bands: int = 32
    seed: int = 1
    jaccard_threshold: float = 0.6
    max_all_pairs: int = 64  # a bucket larger than this is linked star + chain, not all pairs
    # Image near-dedupe: 256-bit pHash, a resized/recompressed copy stays within ~12 bits.
    phash_size: int = 16
    image_bands: int = 16  # pigeonhole: must exceed image_max_distance
    image_max_distance: int = 12
    image_max_aspect_change: float = 0.1
    workers: int = runtime(1)  # processes for the per-shard signature pass

    @model_validator(mode="after")
    def _check(self) -> DedupeConfig:
        if self.num_perm % self.bands:
            raise ValueError(f"num_perm={self.num_perm} must split into bands={self.bands} equal bands")
        if self.image_bands <= self.image_max_distance:
            raise ValueError("image_bands must exceed image_max_distance (pigeonhole guarantee)")
        return self

    def signature_identity(self) -> dict:
        """What decides a per-shard signature file."""
        return self.model_dump(mode="json", include={"shingle_chars", "num_perm", "seed", "phash_size"})
