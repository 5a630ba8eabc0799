"""Decontamination against benchmark test sets: word n-gram coverage and MinHash, checked by answer.

Public API: `BenchmarkConfig`, `DecontamConfig`, `BenchmarkSnapshot(config, data_root).prepare(run_dir, shards) -> index_dir`,
`DecontamStage(config, index_dir)` writing `decontam_schema(config)` annotation shards.
"""

from pipeline.decontam.benchmarks import BenchmarkConfig
from pipeline.decontam.stage import BenchmarkSnapshot, DecontamConfig, DecontamStage, decontam_schema

__all__ = ["BenchmarkConfig", "BenchmarkSnapshot", "DecontamConfig", "DecontamStage", "decontam_schema"]
