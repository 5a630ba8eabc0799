"""Pure matching of problems against benchmark items: n-gram coverage, MinHash, answer and numbers.

Coverage is the fraction of a benchmark question's word n-grams found in a problem, so a test question
pasted inside a longer problem still scores 1. A textual match is contamination only when the item's
numbers all occur in the problem and the gold answers agree: TabMWP and MathVista reuse question
templates over different tables ("What is the mean of the numbers?"), and an identical question with
a different answer is a different problem, not a leaked test item.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from pipeline.text import normalise, numbers_of

_LETTER = re.compile(r"[a-z]")


def ngram_size(question_tokens: int, ngram: int, fallback: int) -> int | None:
    """n for a benchmark question: `ngram` when long enough, `fallback` when shorter, None when even
    shorter (too generic to match by n-grams: "find x"; MinHash on the whole text decides)."""
    if question_tokens >= ngram:
        return ngram
    return fallback if question_tokens >= fallback else None


def resolved_answer(answer: str, choices: Sequence[str] | None) -> str:
    """Normalised answer; a choice letter ("C") becomes the text of that choice."""
    text = normalise(answer)
    if choices and _LETTER.fullmatch(text) and ord(text) - ord("a") < len(choices):
        return normalise(choices[ord(text) - ord("a")])
    return text


def answers_agree(a: str, b: str) -> bool:
    """Equal resolved answers, or the same numbers ("145°" and "145", "$1,000" and "1000 dollars")."""
    if a == b:
        return True
    numbers = numbers_of(a)
    return bool(numbers) and numbers == numbers_of(b)


def numbers_contained(item_numbers: Sequence[str], problem_numbers: Sequence[str]) -> bool:
    return not Counter(item_numbers) - Counter(problem_numbers)
