"""Chain-of-thought quality gates, each rejection with its reason."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

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
    ids = token_ids(text)
    if len(ids) < 4 * ngram:
        return 0.0
    # Each n-gram as a 64-bit polynomial hash (wrapping arithmetic): numpy does in one pass what a
    # tuple per n-gram did at 0.8 ms a 2,000-character CoT, once the verify stage's largest cost.
    grams = np.lib.stride_tricks.sliding_window_view(ids, ngram) @ _gram_weights(ngram)
    _, first, inverse, counts = np.unique(grams, return_index=True, return_inverse=True, return_counts=True)
    starts = np.flatnonzero((first[inverse] < np.arange(len(grams))) & (counts[inverse] >= min_count))
    if not len(starts):
        return 0.0
    # Union of the windows [start, start + ngram): each adds its own length less its overlap with the last.
    covered = ngram + np.minimum(np.diff(starts), ngram).sum()
    return float(covered) / len(ids)


def token_ids(text: str) -> np.ndarray:
    """One uint64 per `_TOKEN` of `text`, equal exactly when the tokens are equal.

    ASCII text (nearly every CoT) is tokenised in numpy: a token has at most 8 characters, so its bytes
    (each + 1, never 0) packed into 64 bits are its id; this is 4x faster than the regex it matches."""
    if not text.isascii():
        vocabulary: dict[str, int] = {}
        tokens = _TOKEN.findall(text)
        return np.fromiter((vocabulary.setdefault(t, len(vocabulary)) for t in tokens), np.uint64, len(tokens))
    chars = np.frombuffer(text.encode("ascii"), np.uint8)
    kind = _ASCII_KIND[chars]  # 0 space, 1 word character, 2 symbol
    word = kind == 1
    begins_run = word & ~np.concatenate([[False], word[:-1]])
    run_start = np.flatnonzero(begins_run)
    # offset of each word character in its run; pieces of 8 start a new token at offsets 0, 8, 16, ...
    run_id = np.cumsum(begins_run) - 1
    offset = np.arange(len(chars)) - run_start[np.maximum(run_id, 0)] if len(run_start) else np.zeros(len(chars), np.int64)
    starts = np.flatnonzero((word & (offset % 8 == 0)) | (kind == 2))
    if not len(starts):
        return np.zeros(0, np.uint64)
    shift = np.where(word, offset % 8, 0).astype(np.uint64) * np.uint64(8)
    packed = np.where(kind == 0, 0, chars.astype(np.uint64) + 1) << shift
    return np.bitwise_or.reduceat(packed, starts)


def _ascii_kinds() -> np.ndarray:
    kinds = np.zeros(128, np.uint8)
    for code in range(128):
        char = chr(code)
        kinds[code] = 1 if re.fullmatch(r"\w", char) else 0 if re.fullmatch(r"\s", char) else 2
    return kinds


_ASCII_KIND = _ascii_kinds()  # what `_TOKEN`'s \w and \s mean for each ASCII character


@functools.lru_cache(maxsize=8)
def _gram_weights(ngram: int) -> np.ndarray:
    return np.random.default_rng(ngram).integers(1, 2**63, ngram, dtype=np.uint64) | np.uint64(1)
