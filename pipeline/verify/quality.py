"""Chain-of-thought quality gates, each rejection with its reason."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numba
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
    if text.isascii():
        ids = _ascii_token_ids(np.frombuffer(text.encode("ascii"), np.uint8), _ASCII_KIND)
    else:
        vocabulary: dict[str, int] = {}
        tokens = _TOKEN.findall(text)
        ids = np.fromiter((vocabulary.setdefault(t, len(vocabulary)) for t in tokens), np.uint64, len(tokens))
    if len(ids) < 4 * ngram:
        return 0.0
    return _covered_by_repeats(ids, _gram_weights(ngram), min_count) / len(ids)


# Compiled (numba, cached on disk): the gate runs on every teacher CoT, 1.6M x k at scale, where numpy's
# array calls cost 0.25 ms a 2,000-character CoT, mostly call overhead.
@numba.njit(cache=True, nogil=True)
def _ascii_token_ids(chars: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """One uint64 per `_TOKEN` of ASCII text, equal exactly when the tokens are equal: a token has at
    most 8 characters, so its bytes (each + 1, never 0) packed into 64 bits are its id."""
    ids = np.empty(len(chars), np.uint64)
    count = 0
    run = 0  # characters of the current word run so far
    for char in chars:
        kind = kinds[char]  # 0 space, 1 word character, 2 symbol
        if kind == 1:
            if run % 8 == 0:  # a word run is cut into pieces of 8
                ids[count] = 0
                count += 1
            ids[count - 1] |= np.uint64(char + 1) << np.uint64(8 * (run % 8))
            run += 1
        else:
            run = 0
            if kind == 2:
                ids[count] = char + 1
                count += 1
    return ids[:count]


@numba.njit(cache=True, nogil=True)
def _covered_by_repeats(ids: np.ndarray, weights: np.ndarray, min_count: int) -> int:
    """Tokens covered by the union of the windows [i, i + ngram) of every n-gram occurrence after the
    first of an n-gram that occurs `min_count`+ times; each n-gram as a 64-bit polynomial hash."""
    ngram = len(weights)
    grams = np.zeros(len(ids) - ngram + 1, np.uint64)
    for start in range(len(grams)):
        for offset in range(ngram):
            grams[start] += ids[start + offset] * weights[offset]  # wraps, like numpy's uint64
    order = np.argsort(grams, kind="mergesort")  # stable: an n-gram's first occurrence leads its run
    repeats = np.zeros(len(grams), np.bool_)
    run_start = 0
    for position in range(1, len(order) + 1):
        if position == len(order) or grams[order[position]] != grams[order[run_start]]:
            if position - run_start >= min_count:
                repeats[order[run_start + 1 : position]] = True
            run_start = position
    covered, last = 0, -ngram
    for start in np.flatnonzero(repeats):  # type: ignore[assignment]  # numba: int64 here, an int in the loop above
        covered += min(start - last, ngram)
        last = start
    return covered


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
