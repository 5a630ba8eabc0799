"""GRPO reward functions: accuracy by the project's verifier, and the <think>...</think>-then-answer format.

TRL calls each with `prompts`, `completions`, `completion_ids` and every dataset column as a keyword list, one
entry per completion: the RL set's `answer`, `answer_type`, `question_type`, `choices`, `precision` and `unit`
are exactly what the verifier needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.verify import Verifier, VerifierConfig, VerifyItem
from pipeline.verify.extract import last_boxed
from pipeline.verify.model import ANSWER_FIELDS

ACCURACY = "accuracy"
# One reasoning block first, then the answer after it (boxed, or <answer> tags).
_THINK_THEN_REST = re.compile(r"^\s*<think>(?P<thought>.*?)</think>(?P<rest>.*)$", re.DOTALL)


@dataclass(frozen=True)
class RewardConfig:
    accuracy_weight: float = 1.0
    format_weight: float = 0.1
    verifier_workers: int = 1  # math-verify worker processes for answers the fast paths cannot settle


def completion_text(completion: str | list[dict[str, Any]]) -> str:
    """The text of a plain or conversational completion (content as a string or as typed parts)."""
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"] if completion else ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def has_think_then_answer(text: str) -> bool:
    match = _THINK_THEN_REST.match(text)
    if match is None or "<think>" in match["thought"] or "</think>" in match["rest"]:
        return False
    rest = match["rest"]
    return last_boxed(rest) is not None or re.search(r"<answer>.+?</answer>", rest, re.DOTALL) is not None


def format_reward(completions: Sequence, **_: Any) -> list[float]:
    return [float(has_think_then_answer(completion_text(c))) for c in completions]


class AccuracyReward:
    """1.0 when the verifier judges the completion's final answer equal to the gold `answer`, else 0.0."""

    __name__ = ACCURACY  # TRL logs rewards under the callable's name

    _shared: AccuracyReward | None = None

    def __init__(self, workers: int = 1):
        self._verifier = Verifier(VerifierConfig(workers=workers))

    @classmethod
    def shared(cls) -> AccuracyReward:
        """One per process, for callers that score one completion at a time (verl's reward manager)."""
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def __call__(self, completions: Sequence, answer: Sequence[str], **columns: Any) -> list[float]:
        """`columns` holds the other ANSWER_FIELDS columns TRL passes (each optional), and any others."""
        columns = {"answer": answer, **columns}
        size = len(completions)
        present = {name: list(columns[name]) for name in ANSWER_FIELDS if columns.get(name) is not None}
        if any(len(values) != size for values in present.values()):
            raise ValueError("every answer column needs one value per completion")
        rows = [{name: values[i] for name, values in present.items()} for i in range(size)]
        items = [VerifyItem.for_row(completion_text(c), row) for c, row in zip(completions, rows)]
        return [float(verdict.correct) for verdict in self._verifier.judge_many(items)]

    def close(self) -> None:
        self._verifier.close()


def build_reward_functions(config: RewardConfig = RewardConfig()) -> tuple[list[Callable], list[float]]:
    """The reward functions and their weights, accuracy first (VAS reads its column by name)."""
    return [AccuracyReward(config.verifier_workers), format_reward], [config.accuracy_weight, config.format_weight]
