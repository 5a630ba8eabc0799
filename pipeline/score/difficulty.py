"""Difficulty: the pass rate p of the policy over its k verified rollouts of each problem.

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

from pipeline.config_base import StrictConfig
from pipeline.generate.reasoning import TRUNCATED
from pipeline.stage import ShardResult, Stage

DIFFICULTY_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("num_rollouts", pa.int32()),
        ("num_correct", pa.int32()),
        ("pass_rate", pa.float64()),  # null when the problem has no successful rollout
    ]
)


class ScoreConfig(StrictConfig):
    """Which generations are rollouts is decided by the backend's roles; only truncated ones are a choice."""

    truncated_rollouts: Literal["wrong", "excluded"] = "wrong"


def pass_rate(num_correct: int, num_rollouts: int) -> float | None:
    return num_correct / num_rollouts if num_rollouts else None


class DifficultyStage(Stage):
    name = "difficulty"
    inputs = ("problems", "verified")
    output_schema = DIFFICULTY_SCHEMA

    def process(self, shard: str, inputs: Mapping[str, pa.Table]) -> ShardResult:
        correct: dict[str, list[bool]] = defaultdict(list)
        stats = Counter()
        for row in inputs["verified"].select(["problem_id", "role", "correct", "verdict_reason"]).to_pylist():
            if row["correct"] is None or row["role"] != "rollout":
                continue
            if row["verdict_reason"] == TRUNCATED:
                excluded = self.config.truncated_rollouts == "excluded"
                stats["skipped_truncated_rollout" if excluded else "truncated_rollout_counted_wrong"] += 1
                if excluded:
                    continue
            correct[row["problem_id"]].append(row["correct"])
        rows = []
        for problem_id in inputs["problems"].column("problem_id").to_pylist():
            outcomes = correct.get(problem_id, [])
            rate = pass_rate(sum(outcomes), len(outcomes))
            stats["unscored" if rate is None else f"pass_rate_{'zero' if rate == 0 else 'one' if rate == 1 else 'mid'}"] += 1
            rows.append({"problem_id": problem_id, "num_rollouts": len(outcomes), "num_correct": sum(outcomes), "pass_rate": rate})
        return ShardResult(pa.Table.from_pylist(rows, schema=DIFFICULTY_SCHEMA), [], stats)
