"""Chain-of-thought quality gates, each rejection with its reason."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from pipeline.verify.extract import continuation_start, find_marked_answer
from pipeline.verify.model import MAX_SCAN_CHARS

_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"
# Words, single symbols, and long runs cut into 8-character pieces (so "aaaa..." repeats too).
_TOKEN = re.compile(r"\w{1,8}|[^\w\s]")


@dataclass
class QualityConfig:
    min_chars: int = 20
    max_chars: int = 32_000
    require_think: bool = False  # recorded teacher outputs (GPT-3, Bard, GPT-4) have no <think> tags
    require_marked_answer: bool = False  # "The answer is"/\boxed/<answer>/"####" required; Bard often has none
    # Repetition: the share of tokens that re-run an n-gram occurring `repeat_min_count`+ times. In the
    # recorded outputs (shared/data) the seven real loops score 0.53-0.86; the next highest, templated
    # or restated reasoning, 0.42.
    max_repeat_fraction: float = 0.5
    repeat_ngram: int = 20
    repeat_min_count: int = 3  # a restatement (twice) is not a loop


@dataclass(frozen=True)
class QualityResult:
    ok: bool
    reason: str  # "ok", "truncated", "missing_think", "malformed_think", "missing_answer",
    #              "continues_past_answer", "degenerate_repetition", "too_short", "too_long"


def check_cot_quality(
    text: str, *, finish_reason: str | None = None, config: QualityConfig | None = None
) -> QualityResult:
    """The first failed gate, cheapest first; ok when none fails. `config` defaults to QualityConfig()."""
    config = config or QualityConfig()
    reason = (
        truncation_reason(text, finish_reason)
        or think_tag_reason(text, config.require_think)
        or length_reason(text, config)
        or answer_reason(text, config.require_marked_answer)
        or continuation_reason(text)
        or repetition_reason(text, config)
    )
    return QualityResult(reason is None, reason or "ok")


def truncation_reason(text: str, finish_reason: str | None) -> str | None:
    """Cut off by the token limit, or ended inside an open <think> block."""
    if finish_reason == "length":
        return "truncated"
    if text.count(_THINK_OPEN) == 1 and _THINK_CLOSE not in text:
        return "truncated"
    return None


def think_tag_reason(text: str, require_think: bool) -> str | None:
    """Exactly one <think>...</think> block, opened before it closes, when present (or required)."""
    opens, closes = text.count(_THINK_OPEN), text.count(_THINK_CLOSE)
    if opens == closes == 0:
        return "missing_think" if require_think else None
    if opens != 1 or closes != 1 or text.index(_THINK_OPEN) > text.index(_THINK_CLOSE):
        return "malformed_think"
    return None


def length_reason(text: str, config: QualityConfig) -> str | None:
    size = len(text.strip())
    if size < config.min_chars:
        return "too_short"
    if size > config.max_chars:
        return "too_long"
    return None


def answer_reason(text: str, require_marked_answer: bool) -> str | None:
    if require_marked_answer and find_marked_answer(text[-MAX_SCAN_CHARS:]) is None:
        return "missing_answer"
    return None


def continuation_reason(text: str) -> str | None:
    """A response that runs on past its answer (a leaked next question, another chat turn, another
    script): its verdict comes from the first part, but it is no example of how to answer."""
    return "continues_past_answer" if continuation_start(text) is not None else None


def repetition_reason(text: str, config: QualityConfig) -> str | None:
    fraction = repeated_fraction(text, config.repeat_ngram, config.repeat_min_count)
    return "degenerate_repetition" if fraction > config.max_repeat_fraction else None


def repeated_fraction(text: str, ngram: int, min_count: int = 2) -> float:
    """Fraction of tokens covered by later occurrences of n-grams that occur `min_count`+ times.

    A loop repeated k times scores about (k-1)/k; reasoning that restates a phrase here and there
    scores low. Texts shorter than a few n-grams score 0.
    """
    tokens = _TOKEN.findall(text)
    if len(tokens) < 4 * ngram:
        return 0.0
    grams = [tuple(tokens[start : start + ngram]) for start in range(len(tokens) - ngram + 1)]
    counts = Counter(grams)
    seen: set[tuple[str, ...]] = set()
    covered = covered_until = 0
    for start, gram in enumerate(grams):
        if gram in seen and counts[gram] >= min_count:
            end = start + ngram
            covered += end - max(start, covered_until)
            covered_until = end
        seen.add(gram)
    return covered / len(tokens)
