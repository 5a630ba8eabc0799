"""Verify: generations shard + its problems -> the same rows with verdict and quality columns.

Fast paths run in this process and only the leftovers go to math-verify's process pool (inside
`Verifier`), so a thread-based task runner never calls signal-based timeouts off the main thread.
"""

from __future__ import annotations

import atexit
import functools
from collections import Counter
from collections.abc import Mapping

import pyarrow as pa
from pydantic import Field

from pipeline.config_base import StrictConfig, runtime
from pipeline.stage import SharedResource, ShardResult, Stage
from pipeline.verify import QualityConfig, Verifier, VerifierConfig, VerifyItem, check_cot_quality
from schemas import GENERATION_SCHEMA


class VerifyStageConfig(StrictConfig):
    workers: int = runtime(2)  # math-verify processes
    timeout_s: float = 5.0  # per answer: an answer that overruns it is judged wrong, so it decides output
    quality: QualityConfig = Field(default_factory=QualityConfig)


def start_verifier(workers: int, timeout_s: float) -> Verifier:
    verifier = Verifier(VerifierConfig(workers=workers, timeout_s=timeout_s))
    atexit.register(verifier.close)
    return verifier


class VerifyStage(Stage):
    name = "verified"
    inputs = ("problems", "generations")
    main_input = "generations"
    output_schema = GENERATION_SCHEMA

    def __init__(self, config: VerifyStageConfig):
        super().__init__(config)
        # One verifier (one set of math-verify workers) for all shards: starting workers costs seconds.
        self._verifier = SharedResource(functools.partial(start_verifier, config.workers, config.timeout_s))

    @property
    def verifier(self) -> Verifier:
        return self._verifier.get()

    def close(self) -> None:
        self._verifier.close()

    def process(self, shard: str, inputs: Mapping[str, pa.Table]) -> ShardResult:
        problems = {p["problem_id"]: p for p in inputs["problems"].to_pylist()}
        rows = inputs["generations"].to_pylist()
        answered = [row for row in rows if row["error"] is None and row["raw_text"] is not None]
        items = [VerifyItem.for_row(row["raw_text"], problems[row["problem_id"]]) for row in answered]
        verdicts = self.verifier.judge_many(items)
        stats: Counter[str] = Counter(skipped_failed_generation=len(rows) - len(answered))
        for row, verdict in zip(answered, verdicts):
            quality = check_cot_quality(row["raw_text"], finish_reason=row["finish_reason"], config=self.config.quality)
            row.update(
                extracted_answer=verdict.extracted,
                correct=verdict.correct,
                verdict_reason=verdict.reason,
                quality_ok=quality.ok,
                quality_reason=quality.reason,
            )
            stats[f"verdict_{verdict.reason}"] += 1
            stats["correct"] += verdict.correct
            stats[f"quality_{quality.reason}"] += 1
        return ShardResult(pa.Table.from_pylist(rows, schema=GENERATION_SCHEMA), [], stats)
