"""Near-dedupe: exact keys, MinHash LSH over math-aware shingles, pHash image groups, union-find.

Public API: `DedupeConfig`, `prepare_dedupe(run_dir, shards, config) -> index_dir`,
`DedupeStage(config, index_dir)` writing `DEDUPE_SCHEMA` annotation shards.
"""

from pipeline.dedupe.config import DedupeConfig
from pipeline.dedupe.stage import DEDUPE_SCHEMA, DedupeStage, prepare_dedupe

__all__ = ["DEDUPE_SCHEMA", "DedupeConfig", "DedupeStage", "prepare_dedupe"]
