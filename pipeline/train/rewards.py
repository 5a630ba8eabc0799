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


def _column(values: Sequence | None, size: int, default: Any = None) -> list:
    return list(values) if values is not None else [default] * size


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

    def __call__(
        self,
        completions: Sequence,
        answer: Sequence[str],
        answer_type: Sequence[str] | None = None,
        question_type: Sequence[str] | None = None,
        choices: Sequence[list[str] | None] | None = None,
        precision: Sequence[int | None] | None = None,
        unit: Sequence[str | None] | None = None,
        **_: Any,
    ) -> list[float]:
        size = len(completions)
        items = [
            VerifyItem(completion_text(c), str(gold), a_type or "text", q_type or "free_form", list(opts or []) or None, prec, u)
            for c, gold, a_type, q_type, opts, prec, u in zip(
                completions,
                answer,
                _column(answer_type, size, "text"),
                _column(question_type, size, "free_form"),
                _column(choices, size),
                _column(precision, size),
                _column(unit, size),
                strict=True,
            )
        ]
        return [float(verdict.correct) for verdict in self._verifier.judge_many(items)]

    def close(self) -> None:
        self._verifier.close()


def build_reward_functions(config: RewardConfig = RewardConfig()) -> tuple[list[Callable], list[float]]:
    """The reward functions and their weights, accuracy first (VAS reads its column by name)."""
    return [AccuracyReward(config.verifier_workers), format_reward], [config.accuracy_weight, config.format_weight]
