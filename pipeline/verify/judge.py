"""Verification of generation rows: a verdict for each answered row, quality columns for teacher rows.

The generate stage judges each round's replies as they come (a problem's next requests depend on them), so
verdicts are columns of the generation rows themselves, never a second copy of their text.

The answer is extracted from the final content; the quality gates read the whole reply, thinking in
<think> tags ahead of the content (the text a cold-start example would hold). A reply cut off by its
token limit is judged "truncated" (wrong, as DAPO counts overlong answers) without extraction.

Fast paths run in this process and only the leftovers go to math-verify's process pool (inside
`Verifier`), so a thread-based task runner never calls signal-based timeouts off the main thread.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from pathlib import Path

import pyarrow as pa
from pydantic import Field

from pipeline.config_base import StrictConfig, runtime
from pipeline.generate.factory import make_backend
from pipeline.generate.reasoning import CUT_OFF, TRUNCATED, reply_text
from pipeline.stage import build_logged
from pipeline.verify import QualityConfig, Verifier, VerifierConfig, VerifyItem, check_cot_quality
from pipeline.verify.model import ANSWER_FIELDS
from pipeline.verify.model_extractor import MODEL_EXTRACTED, MODEL_GARBAGE, ModelExtractor, ModelExtractorConfig


class VerifyStageConfig(StrictConfig):
    workers: int = runtime(2)  # math-verify processes
    timeout_s: float = 5.0  # per answer: an answer that overruns it is judged wrong, so it decides output
    quality: QualityConfig = Field(default_factory=QualityConfig)
    model_extractor: ModelExtractorConfig = Field(default_factory=ModelExtractorConfig)  # off by default
    data_root: str = runtime(".")  # where a "recorded" judge backend finds its recordings


def start_verifier(config: VerifyStageConfig, extractor: ModelExtractor | None = None) -> Verifier:
    return Verifier(VerifierConfig(workers=config.workers, timeout_s=config.timeout_s), answer_extractor=extractor)


def verifier_resources(config: VerifyStageConfig) -> dict[str, object]:
    """A verifier (math-verify worker processes) and, when the judge model is on, its backend: a stage sets them up
    once per worker process, since starting workers costs seconds, and releases them (last built first) when it ends."""
    resources: dict[str, object] = {}
    extractor = None
    if config.model_extractor.enabled:
        backend = build_logged(functools.partial(make_backend, config.model_extractor.backend, Path(config.data_root)))
        resources["judge_backend"] = backend
        extractor = ModelExtractor(backend, config.model_extractor)
    resources["verifier"] = build_logged(functools.partial(start_verifier, config, extractor))
    return resources


class RowJudge:
    """Judges generation rows of one shard in place: verdict columns for every answered row, quality columns for
    teacher rows. One answer spec per problem, shared by its samples; image bytes never leave Arrow."""

    def __init__(self, problems: pa.Table, verifier: Verifier, config: VerifyStageConfig):
        problems = problems.select(["problem_id", "question", *ANSWER_FIELDS])
        self.blank = {p["problem_id"]: VerifyItem.for_row("", p) for p in problems.to_pylist()}
        self.verifier, self.config = verifier, config

    def judge(self, rows: list[dict], stats: Counter[str]) -> None:
        answered = [row for row in rows if row["error"] is None]
        judged = [row for row in answered if row["finish_reason"] != CUT_OFF]
        items = [dataclasses.replace(self.blank[row["problem_id"]], text=row["raw_text"] or "") for row in judged]
        verdicts = iter(self.verifier.judge_many(items))
        stats["skipped_failed_generation"] += len(rows) - len(answered)
        for row in answered:
            if row["finish_reason"] == CUT_OFF:
                row.update(correct=False, verdict_reason=TRUNCATED)
            else:
                verdict = next(verdicts)
                row.update(extracted_answer=verdict.extracted, correct=verdict.correct, verdict_reason=verdict.reason)
                if verdict.method in (MODEL_EXTRACTED, MODEL_GARBAGE):  # the judge model's share, for the cards
                    stats[verdict.method] += 1
            stats[f"verdict_{row['verdict_reason']}"] += 1
            stats["correct"] += row["correct"]
            if row["role"] == "rollout":  # a rollout only scores difficulty: its CoT is never trained on
                stats["quality_not_checked_rollout"] += 1
                continue
            text = reply_text(row["reasoning"], row["raw_text"])
            quality = check_cot_quality(text, finish_reason=row["finish_reason"], config=self.config.quality)
            row.update(quality_ok=quality.ok, quality_reason=quality.reason)
            stats[f"quality_{quality.reason}"] += 1
