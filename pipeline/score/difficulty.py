"""Difficulty: the pass rate p of the policy over its verified rollouts of each problem, as counts, with the Beta
posterior's mean and central interval under a flat prior (rounds stop a problem's rollouts once selection's
decisions are settled, so `num_rollouts` may be below k: the counts say how much evidence p rests on).

Only generations in the "rollout" role count: a teacher's chains of thought say what the teacher can
do, not how hard the problem is for the policy being trained. A rollout cut off by its token limit
(verdict "truncated") counts as a wrong answer, as DAPO counts overlong ones, or not at all
(`score.truncated_rollouts: excluded`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Literal

import pyarrow as pa
from pydantic import Field
from scipy.stats import beta

from pipeline.config_base import StrictConfig
from pipeline.generate.reasoning import TRUNCATED
from pipeline.stage import ShardResult, Stage

DIFFICULTY_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("num_rollouts", pa.int32()),
        ("num_correct", pa.int32()),
        ("pass_rate", pa.float64()),  # num_correct / num_rollouts; null when the problem has no counted rollout
        ("pass_rate_mean", pa.float64()),  # posterior mean (num_correct + 1) / (num_rollouts + 2)
        ("pass_rate_low", pa.float64()),  # the posterior's central `score.interval` interval
        ("pass_rate_high", pa.float64()),
    ]
)


class ScoreConfig(StrictConfig):
    """Which generations are rollouts is decided by the backend's roles; only truncated ones are a choice."""

    truncated_rollouts: Literal["wrong", "excluded"] = "wrong"
    interval: float = Field(0.9, gt=0.0, lt=1.0)  # mass of the posterior interval written beside each pass rate


def pass_rate(num_correct: int, num_rollouts: int) -> float | None:
    return num_correct / num_rollouts if num_rollouts else None


def posterior(num_correct: int, num_rollouts: int, interval: float) -> tuple[float, float, float]:
    """Mean and central interval of p's Beta(1 + correct, 1 + wrong) posterior (flat prior)."""
    a, b = 1 + num_correct, 1 + num_rollouts - num_correct
    low, high = beta.ppf([(1 - interval) / 2, (1 + interval) / 2], a, b)
    return a / (a + b), float(low), float(high)


def rollout_outcome(row: Mapping, truncated_rollouts: str) -> bool | None:
    """What a verified generation row adds to its problem's pass rate: right, wrong, or nothing (not a rollout, not
    answered, or a truncated reply where those are excluded). Generation's rounds count with it too."""
    if row["role"] != "rollout" or row["correct"] is None:
        return None
    if row["verdict_reason"] == TRUNCATED and truncated_rollouts == "excluded":
        return None
    return bool(row["correct"])


class DifficultyStage(Stage[ScoreConfig]):
    name = "difficulty"
    inputs = ("problems", "generations")
    output_schema = DIFFICULTY_SCHEMA

    def process(self, shard: str, inputs: Mapping[str, pa.Table]) -> ShardResult:
        correct: dict[str, list[bool]] = defaultdict(list)
        stats: Counter[str] = Counter()
        for row in inputs["generations"].select(["problem_id", "role", "correct", "verdict_reason"]).to_pylist():
            if row["role"] == "rollout" and row["verdict_reason"] == TRUNCATED:
                stats["skipped_truncated_rollout" if self.config.truncated_rollouts == "excluded" else "truncated_rollout_counted_wrong"] += 1
            if (outcome := rollout_outcome(row, self.config.truncated_rollouts)) is not None:
                correct[row["problem_id"]].append(outcome)
        rows = []
        for problem_id in inputs["problems"].column("problem_id").to_pylist():
            outcomes = correct.get(problem_id, [])
            right, counted = sum(outcomes), len(outcomes)
            rate = pass_rate(right, counted)
            stats["unscored" if rate is None else f"pass_rate_{'zero' if rate == 0 else 'one' if rate == 1 else 'mid'}"] += 1
            mean, low, high = posterior(right, counted, self.config.interval) if counted else (None, None, None)
            rows.append(
                {"problem_id": problem_id, "num_rollouts": counted, "num_correct": right, "pass_rate": rate,
                 "pass_rate_mean": mean, "pass_rate_low": low, "pass_rate_high": high}
            )  # fmt: skip
        return ShardResult(pa.Table.from_pylist(rows, schema=DIFFICULTY_SCHEMA), [], stats)
