"""Near-dedupe: exact keys, MinHash LSH over math-aware shingles, pHash image groups, union-find.

Public API: `DedupeConfig`, `DedupeIndex(config).prepare(run_dir, shards) -> index_dir`,
`DedupeStage(config, index_dir)` writing `DEDUPE_SCHEMA` annotation shards.
"""

from pipeline.dedupe.config import DedupeConfig
from pipeline.dedupe.stage import DEDUPE_SCHEMA, DedupeIndex, DedupeStage

__all__ = ["DEDUPE_SCHEMA", "DedupeConfig", "DedupeIndex", "DedupeStage"]
