"""Select: per shard, the rows of the cold-start set and of the RL set.

Upstream judgements arrive as narrow annotation shards aligned row by row with the problems shard;
a problem is eligible when every annotation that judges it says keep (a representative of its
duplicate cluster, not contaminated). Nothing upstream is modified: the sets are new tables.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import pyarrow as pa
from pydantic import BaseModel

from pipeline.prompts import chat_messages
from pipeline.stage import ShardResult, Stage
from schemas import COLD_START_SCHEMA, RL_SCHEMA


class SelectConfig(BaseModel):
    cold_start_max_per_problem: int = 2  # verified CoTs kept per problem, in (teacher, sample) order
    rl_min_pass_rate: float = 0.0  # exclusive bounds: p = 0 and p = 1 give GRPO no gradient
    rl_max_pass_rate: float = 1.0
    rl_min_rollouts: int = 2


def eligibility(problems: pa.Table, annotations: Sequence[pa.Table]) -> tuple[list[bool], Counter[str]]:
    """Per problem row: keep or not, and why not (counted by reason)."""
    keep = [True] * problems.num_rows
    reasons: Counter[str] = Counter()
    ids = problems.column("problem_id").to_pylist()
    for table in annotations:
        if table.column("problem_id").to_pylist() != ids:
            raise ValueError("annotation shard is not aligned with its problems shard")
        judges = [n for n in table.column_names if n == "is_representative" or n.startswith("contaminated_")]
        for name in judges:
            values = table.column(name).to_pylist()
            for i, value in enumerate(values):
                rejected = (value is False) if name == "is_representative" else bool(value)
                if rejected and keep[i]:
                    keep[i] = False
                    reasons["dropped_duplicate" if name == "is_representative" else f"dropped_{name}"] += 1
    return keep, reasons


def published_images(images: list[dict] | None) -> list[dict]:
    return [{"bytes": image["bytes"], "path": image["path"]} for image in images or []]


def solution_text(raw_text: str, answer: str) -> str:
    """The assistant turn: the teacher's reasoning in <think> tags, then the boxed verified answer."""
    if "<think>" in raw_text and "</think>" in raw_text:
        return raw_text.strip()
    return f"<think>\n{raw_text.strip()}\n</think>\n\n\\boxed{{{answer}}}"


class ColdStartStage(Stage):
    name = "cold_start"
    output_schema = COLD_START_SCHEMA

    def __init__(self, config: SelectConfig, annotation_stages: Sequence[str] = ()):
        super().__init__(config)
        self.annotation_stages = tuple(annotation_stages)
        self.inputs = ("problems", "verified", *self.annotation_stages)

    def process(self, shard: str, inputs: Mapping[str, pa.Table]) -> ShardResult:
        problems = inputs["problems"]
        keep, stats = eligibility(problems, [inputs[n] for n in self.annotation_stages])
        eligible = {p["problem_id"]: p for p, k in zip(problems.to_pylist(), keep) if k}
        kept_per_problem: Counter[str] = Counter()
        rows = []
        for generation in inputs["verified"].to_pylist():
            problem = eligible.get(generation["problem_id"])
            if problem is None:
                stats["dropped_generation_of_ineligible_problem"] += 1
            elif not generation["correct"]:
                stats["dropped_generation_incorrect"] += 1
            elif not generation["quality_ok"]:
                stats[f"dropped_quality_{generation['quality_reason']}"] += 1
            elif kept_per_problem[problem["problem_id"]] >= self.config.cold_start_max_per_problem:
                stats["dropped_generation_over_per_problem_cap"] += 1
            else:
                kept_per_problem[problem["problem_id"]] += 1
                rows.append(
                    {
                        "problem_id": problem["problem_id"],
                        "source": problem["source"],
                        "domain": problem["domain"],
                        "teacher": generation["teacher"],
                        "messages": chat_messages(problem)
                        + [{"role": "assistant", "content": solution_text(generation["raw_text"], problem["answer"])}],
                        "images": published_images(problem["images"]),
                        "answer": problem["answer"],
                    }
                )
        return ShardResult(pa.Table.from_pylist(rows, schema=COLD_START_SCHEMA), [], stats)


class RLStage(Stage):
    name = "rl"
    output_schema = RL_SCHEMA

    def __init__(self, config: SelectConfig, annotation_stages: Sequence[str] = ()):
        super().__init__(config)
        self.annotation_stages = tuple(annotation_stages)
        self.inputs = ("problems", "difficulty", *self.annotation_stages)

    def process(self, shard: str, inputs: Mapping[str, pa.Table]) -> ShardResult:
        problems = inputs["problems"]
        keep, stats = eligibility(problems, [inputs[n] for n in self.annotation_stages])
        rows = []
        for problem, eligible, score in zip(problems.to_pylist(), keep, inputs["difficulty"].to_pylist()):
            rate = score["pass_rate"]
            if not eligible:
                continue
            if rate is None or score["num_rollouts"] < self.config.rl_min_rollouts:
                stats["dropped_too_few_rollouts"] += 1
            elif not self.config.rl_min_pass_rate < rate < self.config.rl_max_pass_rate:
                stats["dropped_pass_rate_outside_band"] += 1
            else:
                rows.append(
                    {
                        "problem_id": problem["problem_id"],
                        "prompt": chat_messages(problem),
                        "images": published_images(problem["images"]),
                        "answer": problem["answer"],
                        "answer_type": problem["answer_type"],
                        "question_type": problem["question_type"],
                        "choices": problem["choices"],
                        "precision": problem["precision"],
                        "unit": problem["unit"],
                        "pass_rate": rate,
                        "num_rollouts": score["num_rollouts"],
                        "source": problem["source"],
                        "domain": problem["domain"],
                    }
                )
        return ShardResult(pa.Table.from_pylist(rows, schema=RL_SCHEMA), [], stats)
