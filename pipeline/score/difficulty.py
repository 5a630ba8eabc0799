"""Difficulty: the pass rate p of a policy over its k verified rollouts of each problem."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping

import pyarrow as pa

from pipeline.config_base import StrictConfig
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
    rollout_teachers: list[str] | None = None  # whose generations count as policy rollouts; None: all


def pass_rate(num_correct: int, num_rollouts: int) -> float | None:
    return num_correct / num_rollouts if num_rollouts else None


class DifficultyStage(Stage):
    name = "difficulty"
    inputs = ("problems", "verified")
    output_schema = DIFFICULTY_SCHEMA

    def process(self, shard: str, inputs: Mapping[str, pa.Table]) -> ShardResult:
        teachers = self.config.rollout_teachers
        correct: dict[str, list[bool]] = defaultdict(list)
        for row in inputs["verified"].select(["problem_id", "teacher", "correct"]).to_pylist():
            if row["correct"] is not None and (teachers is None or row["teacher"] in teachers):
                correct[row["problem_id"]].append(row["correct"])
        rows, stats = [], Counter()
        for problem_id in inputs["problems"].column("problem_id").to_pylist():
            outcomes = correct.get(problem_id, [])
            rate = pass_rate(sum(outcomes), len(outcomes))
            stats["unscored" if rate is None else f"pass_rate_{'zero' if rate == 0 else 'one' if rate == 1 else 'mid'}"] += 1
            rows.append({"problem_id": problem_id, "num_rollouts": len(outcomes), "num_correct": sum(outcomes), "pass_rate": rate})
        return ShardResult(pa.Table.from_pylist(rows, schema=DIFFICULTY_SCHEMA), [], stats)
