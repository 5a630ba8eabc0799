"""Is an extracted answer equivalent to the gold answer? Fast paths, in order of cost.

Each verdict names the path that decided it. A pair that no fast path can settle (LaTeX, symbolic
expressions) is returned undecided (`None`) for math-verify, which runs in worker processes. Input is
never evaluated; numbers are parsed by regular expressions with length caps, so a 10^6-digit string
costs a length check, not a parse.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from pipeline.verify.extract import LETTERS, MAX_ANSWER_CHARS, map_to_choice

MAX_NUMBER_CHARS = 64  # no gold answer has more digits; a longer "number" is compared as text


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str  # the path that decided: exact, numeric, numeric_precision, percent, choice, list, yes_no, math_verify, math_verify_timeout, no_answer, answer_too_long, mismatch, numeric_mismatch
    extracted: str | None = None
    method: str = "none"  # how the answer was extracted


_LATEX_FRACTION = re.compile(r"^\\[dt]?frac\{\s*([-+]?\d+(?:\.\d+)?)\s*\}\{\s*([-+]?\d+(?:\.\d+)?)\s*\}$")
_PLAIN_FRACTION = re.compile(r"^([-+]?\d+(?:\.\d+)?)\s*/\s*([-+]?\d+(?:\.\d+)?)$")
_PLAIN_NUMBER = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d{1,3})?$")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?:\D|$))")
# "11.0 cm", "4 per day"; never "1 and 9" (a second number means a different answer)
_LEADING_NUMBER_THEN_WORDS = re.compile(r"^([-+]?(?:\d+\.?\d*|\.\d+)(?:\s*/\s*\d+)?)\s*%?\s*[a-zA-Z°][a-zA-Z°\s.^/]*$")
_DECORATIONS = ("\\$", "$", "\\!", "\\,", "\\;", "^\\circ", "^{\\circ}", "°", "\\left", "\\right")
_TEXT_COMMAND = re.compile(r"\\(?:text|mathrm|textbf|mbox)\{([^{}]*)\}")
_MATHY = re.compile(r"[\\^_{}]|sqrt|\bpi\b|\d\s*[*/]\s*\d|[a-z]\s*[+\-*/=]\s*\w")
_YES = {"yes", "true", "correct", "y"}
_NO = {"no", "false", "incorrect", "n"}


_UNICODE_MINUS = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00a0": " "})


def normalise_text(text: str) -> str:
    text = _TEXT_COMMAND.sub(r"\1", text.translate(_UNICODE_MINUS))
    text = text.lower().replace("\\%", "%")
    return re.sub(r"[\s\"'`*.,;:!?]+", " ", text).strip()


def parse_number(text: str, unit: str | None = None) -> tuple[float, bool] | None:
    """(value, written as a percent) for a number in any common spelling, else None."""
    if len(text) > MAX_NUMBER_CHARS:
        return None
    text = _TEXT_COMMAND.sub(r"\1", text.strip().translate(_UNICODE_MINUS))
    for decoration in _DECORATIONS:
        text = text.replace(decoration, "")
    if unit:
        text = re.sub(rf"\s*{re.escape(unit.strip())}\s*$", "", text)
    text = _THOUSANDS.sub("", text.strip()).replace("\\%", "%").strip()
    percent = text.endswith("%")
    text = text.rstrip("%").strip()
    words = _LEADING_NUMBER_THEN_WORDS.match(text)
    if words:  # "11.0 cm", "5 apples"
        text = words.group(1)
    for pattern in (_LATEX_FRACTION, _PLAIN_FRACTION):
        fraction = pattern.match(text)
        if fraction:
            denominator = float(fraction.group(2))
            return (float(fraction.group(1)) / denominator, percent) if denominator else None
    if _PLAIN_NUMBER.match(text):
        value = float(text)
        return (value, percent) if math.isfinite(value) else None
    return None


def numbers_equal(pred: float, gold: float, precision: int | None) -> bool:
    if precision is not None:
        return abs(round(pred, precision) - round(gold, precision)) < 10 ** -(precision + 3)
    return math.isclose(pred, gold, rel_tol=1e-6, abs_tol=1e-9)


def _numeric_verdict(pred: str, gold: str, precision: int | None, unit: str | None) -> Verdict | None:
    parsed_pred, parsed_gold = parse_number(pred, unit), parse_number(gold, unit)
    if parsed_pred is None or parsed_gold is None:
        return None
    (p, p_percent), (g, g_percent) = parsed_pred, parsed_gold
    reason = "numeric_precision" if precision is not None else "numeric"
    if numbers_equal(p, g, precision):
        return Verdict(True, reason)
    if p_percent != g_percent and (numbers_equal(p / 100, g, precision) or numbers_equal(p, g / 100, precision)):
        return Verdict(True, "percent")
    return Verdict(False, "numeric_mismatch")


def _parse_list(text: str) -> list[str] | None:
    inner = text.strip()
    if inner[:1] in "[(" and inner[-1:] in "])":
        inner = inner[1:-1]
    items = [item.strip() for item in inner.split(",")]
    return items if len(items) > 1 and all(items) else None


def _gold_choice(gold: str, choices: list[str]) -> str:
    letter = gold.strip().strip("()")
    if len(letter) == 1 and letter in LETTERS[: len(choices)] and gold not in choices:
        return choices[LETTERS.index(letter)]
    return gold


def judge_fast(
    pred: str | None,
    gold: str,
    *,
    answer_type: str = "text",
    question_type: str = "free_form",
    choices: list[str] | None = None,
    precision: int | None = None,
    unit: str | None = None,
) -> Verdict | None:
    """A verdict from the cheap paths, or None when only math-verify can tell."""
    if pred is None or not pred.strip():
        return Verdict(False, "no_answer")
    if len(pred) > MAX_ANSWER_CHARS:
        return Verdict(False, "answer_too_long")
    if question_type == "multi_choice" and choices:
        chosen, _ = map_to_choice(pred, choices)
        target = _gold_choice(gold, choices)
        if chosen is not None:
            return Verdict(normalise_text(chosen) == normalise_text(target), "choice")
    if normalise_text(pred) == normalise_text(gold):
        return Verdict(True, "exact")
    pred_word, gold_word = normalise_text(pred), normalise_text(gold)
    if gold_word in _YES | _NO and (pred_word in _YES | _NO):
        return Verdict((pred_word in _YES) == (gold_word in _YES), "yes_no")
    numeric = _numeric_verdict(pred, gold, precision, unit)
    if numeric is not None:
        return numeric
    if answer_type == "list":
        pred_items, gold_items = _parse_list(pred), _parse_list(gold)
        if pred_items and gold_items:
            same = len(pred_items) == len(gold_items) and all(
                (_numeric_verdict(p, g, precision, unit) or Verdict(normalise_text(p) == normalise_text(g), "exact")).correct
                for p, g in zip(pred_items, gold_items)
            )
            return Verdict(same, "list")
    if not (_MATHY.search(pred) or _MATHY.search(gold)):
        return Verdict(False, "mismatch")
    return None
