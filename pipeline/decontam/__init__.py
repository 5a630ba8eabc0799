"""Decontamination against benchmark test sets: word n-gram coverage and MinHash, checked by answer.

Public API: `BenchmarkConfig`, `DecontamConfig`, `prepare_decontam(run_dir, config, data_root) -> index_dir`,
`DecontamStage(config, index_dir)` writing `decontam_schema(config)` annotation shards.
"""

from pipeline.decontam.benchmarks import BenchmarkConfig
from pipeline.decontam.stage import DecontamConfig, DecontamStage, decontam_schema, prepare_decontam

__all__ = ["BenchmarkConfig", "DecontamConfig", "DecontamStage", "decontam_schema", "prepare_decontam"]
