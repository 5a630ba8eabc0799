"""Quality checks a chain of thought must pass to enter the cold-start set, each with its reason."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.verify.extract import last_boxed


@dataclass
class QualityConfig:
    min_chars: int = 20
    max_chars: int = 32_000
    require_think: bool = False  # recorded outputs predate <think>; teacher runs should set this
    require_answer: bool = False  # demand an anchored final answer (boxed or <answer>)
    max_repeat_fraction: float = 0.3  # share of the text covered by one repeated 8-gram of words
    repeat_ngram: int = 8


@dataclass(frozen=True)
class QualityResult:
    ok: bool
    reason: str  # ok, truncated, missing_think, malformed_think, missing_answer, degenerate_repetition, too_short, too_long


def repeated_fraction(text: str, n: int) -> float:
    """Fraction of words covered by the most frequent word n-gram (beyond its first occurrence)."""
    words = text.split()
    if len(words) < 2 * n:
        return 0.0
    counts: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        counts[gram] = counts.get(gram, 0) + 1
    return (max(counts.values()) - 1) * n / len(words)


def check_cot_quality(text: str, *, finish_reason: str | None = None, config: QualityConfig = QualityConfig()) -> QualityResult:
    if finish_reason == "length":
        return QualityResult(False, "truncated")
    stripped = text.strip()
    if len(stripped) < config.min_chars:
        return QualityResult(False, "too_short")
    if len(stripped) > config.max_chars:
        return QualityResult(False, "too_long")
    opens, closes = len(re.findall(r"<think>", text)), len(re.findall(r"</think>", text))
    if opens or closes:
        if opens != 1 or closes != 1 or text.index("<think>") > text.index("</think>"):
            return QualityResult(False, "truncated" if opens > closes else "malformed_think")
    elif config.require_think:
        return QualityResult(False, "missing_think")
    if config.require_answer:
        after_think = text.split("</think>")[-1]
        if last_boxed(after_think) is None and "<answer>" not in after_think:
            return QualityResult(False, "missing_answer")
    if repeated_fraction(stripped, config.repeat_ngram) > config.max_repeat_fraction:
        return QualityResult(False, "degenerate_repetition")
    return QualityResult(True, "ok")
