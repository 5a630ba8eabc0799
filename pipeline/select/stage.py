"""Materialise the planned rows of the cold-start and RL sets, shard by shard.

What is selected is decided by `pipeline.select.plan`; these stages only build the published records
(conversational messages, images, the answer fields reward functions need) for the planned keys.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.generate.reasoning import THINK_CLOSE, THINK_OPEN, reply_text
from pipeline.index import IndexedStage
from pipeline.prompts import chat_messages
from pipeline.select.plan import planned_keys
from pipeline.stage import ShardResult
from pipeline.verify.model import ANSWER_FIELDS
from schemas import COLD_START_SCHEMA, RL_SCHEMA


def published_images(images: list[dict] | None) -> list[dict]:
    return [{"bytes": image["bytes"], "path": image["path"]} for image in images or []]


def solution_text(raw_text: str | None, answer: str, reasoning: str | None = None) -> str:
    """The assistant turn: the teacher's thinking in <think> tags, then its final content. A reply without
    thinking of its own (tags in its text aside) becomes the reasoning, followed by the boxed verified answer."""
    text = reply_text(reasoning, raw_text)
    if THINK_OPEN in text and THINK_CLOSE in text:
        return text.strip()
    return f"{THINK_OPEN}\n{text.strip()}\n{THINK_CLOSE}\n\n\\boxed{{{answer}}}"


class _PlannedStage(IndexedStage[None]):
    """The plan decides every row: another set's settings, or a runtime knob, change nothing here."""

    def __init__(self, plan_dir: Path | str):
        super().__init__(None, plan_dir)


class ColdStartStage(_PlannedStage):
    name = "cold_start"
    inputs = ("problems", "generations", "difficulty", "problem_type")
    main_input = "generations"
    output_schema = COLD_START_SCHEMA

    def process(self, shard: str, inputs: Mapping[str, pa.Table]) -> ShardResult:
        keys = planned_keys(self.index_dir, shard)
        problems = {p["problem_id"]: p for p in inputs["problems"].to_pylist()}
        ids = inputs["problems"].column("problem_id").to_pylist()
        types = dict(zip(ids, inputs["problem_type"].column("problem_type").to_pylist()))
        pass_rates = dict(zip(ids, inputs["difficulty"].column("pass_rate").to_pylist()))
        verified = inputs["generations"]
        planned = verified.filter(pc.is_in(verified.column("request_id"), value_set=pa.array(list(keys), pa.string())))
        rows = []
        for generation in planned.select(["request_id", "problem_id", "teacher", "raw_text", "reasoning"]).to_pylist():
            problem = problems[generation["problem_id"]]
            rows.append(
                {
                    "problem_id": problem["problem_id"],
                    "source": problem["source"],
                    "domain": problem["domain"],
                    "problem_type": types[problem["problem_id"]],
                    "teacher": generation["teacher"],
                    "messages": chat_messages(problem)
                    + [{"role": "assistant", "content": solution_text(generation["raw_text"], problem["answer"], generation["reasoning"])}],
                    "images": published_images(problem["images"]),
                    "answer": problem["answer"],
                    "pass_rate": pass_rates[problem["problem_id"]],
                }
            )
        return ShardResult(pa.Table.from_pylist(rows, schema=COLD_START_SCHEMA), [], Counter(planned=len(keys)))


class RLStage(_PlannedStage):
    name = "rl"
    inputs = ("problems", "difficulty", "problem_type")
    output_schema = RL_SCHEMA

    def process(self, shard: str, inputs: Mapping[str, pa.Table]) -> ShardResult:
        keys = planned_keys(self.index_dir, shard)
        rows = []
        types = inputs["problem_type"].column("problem_type").to_pylist()
        for problem, score, problem_type in zip(inputs["problems"].to_pylist(), inputs["difficulty"].to_pylist(), types):
            if problem["problem_id"] not in keys:
                continue
            keys.discard(problem["problem_id"])  # an exact duplicate later in the shard is not planned twice
            rows.append(
                {
                    "problem_id": problem["problem_id"],
                    "prompt": chat_messages(problem),
                    "images": published_images(problem["images"]),
                    **{name: problem[name] for name in ANSWER_FIELDS},
                    "pass_rate": score["pass_rate"],
                    "num_rollouts": score["num_rollouts"],
                    "num_correct": score["num_correct"],
                    "source": problem["source"],
                    "domain": problem["domain"],
                    "problem_type": problem_type,
                }
            )
        return ShardResult(pa.Table.from_pylist(rows, schema=RL_SCHEMA), [], Counter())
