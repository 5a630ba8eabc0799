"""Answer equivalence: cheap, exact fast paths; math-verify (sympy) only for what they cannot decide."""

from __future__ import annotations

import math
import re
from fractions import Fraction

from pipeline.verify.evaluate import numeric_value
from pipeline.verify.extract import match_choice, unbox
from pipeline.verify.model import MAX_ANSWER_CHARS, MAX_BRACE_DEPTH, MAX_MATH_VERIFY_CHARS, AnswerSpec
from pipeline.verify.normalize import (
    ParsedNumber,
    canonical_boolean,
    compact_form,
    leading_boolean,
    normalize_text,
    parse_number,
    strip_latex_wrappers,
)

Decision = tuple[bool, str]  # (correct, reason)

# Text that math-verify might read as mathematics; anything else is compared as text only.
_MATH_OPERATORS = re.compile(r"[\\^_=+*/()\[\]{}√π∞<>≤≥]")
_MATH_SIGNS = re.compile(rf"\d|{_MATH_OPERATORS.pattern}")
_NEGATED = re.compile(r"\b(?:not|never)\b|n't\b", re.IGNORECASE)  # an answer that denies a value is not that value
_LIST_BRACKETS = "[]()"
_PI = re.compile(r"π|\\pi\b")
_ROOT_OF_INTEGER = re.compile(r"(?:√|\\sqrt)\s*\{?\s*(\d{1,12})\b")
MIN_SIGNIFICANT_DIGITS = 3  # for a rounded decimal to count as an exact fraction


def decide_fast(pred: str | None, spec: AnswerSpec) -> Decision | None:
    """A verdict from the fast paths, or None when only math-verify can tell."""
    if pred is None or not pred.strip():
        return False, "no_answer"
    if len(pred) > MAX_ANSWER_CHARS:
        return False, "answer_too_long"
    if len(spec.gold) > MAX_ANSWER_CHARS:
        return False, "gold_too_long"
    if spec.is_multi_choice:
        decided = _decide_choice(pred, spec)
        if decided is not None:
            return decided
    gold = comparable_gold(spec)
    if normalize_text(pred) == normalize_text(gold) or _MATH_SIGNS.search(gold) and compact_form(pred) == compact_form(gold):
        return True, "exact"
    gold_number = parse_number(gold, spec.unit)
    pred_number = parse_number(pred, spec.unit)
    if gold_number is not None and pred_number is not None:
        reason = numbers_match(pred_number, gold_number, spec.precision)
        return (True, reason) if reason else (False, "mismatch")
    gold_boolean = canonical_boolean(gold)
    if gold_boolean is not None:
        said = canonical_boolean(pred) or leading_boolean(pred)
        return (True, "exact") if said == gold_boolean else (False, "mismatch")
    if spec.answer_type == "list":
        decided = _decide_list(pred, gold, spec)
        if decided is not None:
            return decided
    if gold_number is not None and is_lone_letter(pred):
        return False, "mismatch"  # "(D)", "\\textbf{(C)}" for a number: one symbol is never a rational number
    plain_pred, plain_gold = strip_latex_wrappers(pred), strip_latex_wrappers(gold)
    if _NEGATED.search(plain_pred) and not _NEGATED.search(plain_gold):
        return False, "mismatch"  # "not 9:00 P.M." against "9:00 P.M.": math-verify reads the time and drops the word
    if not (_MATH_SIGNS.search(plain_pred) and _MATH_SIGNS.search(plain_gold)):
        return False, "mismatch"
    if gold_number is not None and not _MATH_OPERATORS.search(plain_pred):
        return False, "mismatch"  # a number against words and numbers ("1 and 9", "6,5"): nothing to simplify
    if pred_number is not None and not _MATH_OPERATORS.search(plain_gold):
        return False, "mismatch"  # ... and the other way round ("either 0 or 1" against "2")
    if not fits_math_verify(pred) or not fits_math_verify(gold):
        return False, "answer_too_complex"
    if (pred_number or gold_number) and looks_irrational(plain_gold if pred_number else plain_pred):
        return False, "mismatch"  # a rational number is no multiple of π or a root ("2" against "8-2\\pi")
    if values_differ(pred, gold, gold_number):
        return False, "mismatch"
    return None


_LETTER_MARKUP = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)(?![a-z])|[\s${}()\[\].:]")


def is_lone_letter(answer: str) -> bool:
    """Whether `answer` is one letter in brackets or text markup and nothing else ("(B)", "$$ (D) $$",
    "\\textbf{(C)}"): an option letter, to math-verify a single free symbol (or e, or i)."""
    if len(answer) > _LONE_LETTER_MAX_CHARS:
        return False
    rest = _LETTER_MARKUP.sub("", answer)
    return len(rest) == 1 and rest.isascii() and rest.isalpha()


_LONE_LETTER_MAX_CHARS = 40


def values_differ(pred: str, gold: str, gold_number: ParsedNumber | None) -> bool:
    """Whether two plain arithmetic expressions have clearly different values (a gold written with
    decimals is taken as rounded: values within half its last digit are left to math-verify)."""
    pred_value, gold_value = numeric_value(pred), numeric_value(gold)
    if pred_value is None or gold_value is None:
        return False
    tolerance = 0.5 * 10.0**-gold_number.decimals if gold_number is not None and gold_number.decimals else 0.0
    return not math.isclose(pred_value, gold_value, rel_tol=1e-9, abs_tol=max(tolerance, 1e-12))


def looks_irrational(answer: str) -> bool:
    """Whether a simplified answer holds π or the root of a non-square integer ("8-2\\pi", "3\\sqrt{3}")."""
    if _PI.search(answer):
        return True
    return any(math.isqrt(int(n)) ** 2 != int(n) for n in _ROOT_OF_INTEGER.findall(answer))


def _decide_choice(pred: str, spec: AnswerSpec) -> Decision | None:
    """Both answers name an option: correct iff the same option. Otherwise None: the answer is then
    compared with the gold option's value (`comparable_gold`), "5\\sqrt{5}-10" with "$5(\\sqrt{5}-2)$"."""
    assert spec.choices is not None
    pred_choice = match_choice(pred, spec.choices)
    gold_choice = match_choice(spec.gold, spec.choices)
    if pred_choice is None or gold_choice is None:
        return None
    return (True, "choice") if pred_choice[0] == gold_choice[0] else (False, "mismatch")


def comparable_gold(spec: AnswerSpec) -> str:
    """The gold answer as a value: for multiple choice the text of the gold option (a gold given as a
    letter, as MATH-V's, names it), unless the options are themselves just letters."""
    if not spec.is_multi_choice:
        return unbox(spec.gold) if "box" in spec.gold else spec.gold
    assert spec.choices is not None
    gold_choice = match_choice(spec.gold, spec.choices)
    return spec.gold if gold_choice is None else spec.choices[gold_choice[0]]


def numbers_match(pred: ParsedNumber, gold: ParsedNumber, precision: int | None) -> str | None:
    """The reason two numbers count as equal, or None.

    Exact value ("numeric", or "fraction" when one side is a/b); a percent read as its fraction
    ("percent"); equal after rounding to the stated decimal places ("numeric_precision"); an exact
    fraction against its correctly rounded decimal, e.g. 1/3 vs 0.333 ("fraction").
    """
    if pred.value == gold.value:
        return "fraction" if pred.is_fraction != gold.is_fraction else "numeric"
    if pred.is_percent and pred.value / 100 == gold.value or gold.is_percent and gold.value / 100 == pred.value:
        return "percent"
    if precision is not None and _within_half_unit(pred.value, gold.value, precision):
        return "numeric_precision"
    if pred.is_fraction and _is_rounding_of(gold, pred.value) or gold.is_fraction and _is_rounding_of(pred, gold.value):
        return "fraction"
    return None


def _is_rounding_of(decimal: ParsedNumber, exact: Fraction) -> bool:
    """Whether `decimal` is `exact` correctly rounded, with enough significant digits to mean it
    (0.333 or 0.1786 for 1/3 or 5/28; 0.33 or 0.15 is too coarse to tell from a neighbour)."""
    digits = decimal.value.numerator * 10**decimal.decimals // decimal.value.denominator
    significant = len(str(abs(digits)).lstrip("0"))
    return (
        decimal.decimals > 0
        and significant >= MIN_SIGNIFICANT_DIGITS
        and _within_half_unit(exact, decimal.value, decimal.decimals)
    )


def _within_half_unit(value: Fraction, rounded: Fraction, decimals: int) -> bool:
    """Whether `rounded` is `value` rounded to `decimals` places (ties either way)."""
    decimals = min(max(decimals, 0), 20)
    return abs(value - rounded) <= Fraction(1, 2 * 10**decimals)


def _decide_list(pred: str, gold: str, spec: AnswerSpec) -> Decision | None:
    """Element-wise comparison of "[1, 2.5]"-style lists of plain numbers or words (order matters)."""
    pred_items, gold_items = split_list(pred), split_list(gold)
    if len(pred_items) != len(gold_items):
        return None
    for pred_item, gold_item in zip(pred_items, gold_items):
        decided = decide_fast(pred_item, AnswerSpec(gold_item, "text", precision=spec.precision, unit=spec.unit))
        if decided is None:
            return None
        if not decided[0]:
            return False, "mismatch"
    return True, "list"


def split_list(answer: str) -> list[str]:
    text = strip_latex_wrappers(answer).strip().strip(_LIST_BRACKETS)
    return [item.strip() for item in text.split(",") if item.strip()]


def fits_math_verify(answer: str) -> bool:
    """Short and shallow enough that sympy gets a fair chance inside the timeout."""
    if len(answer) > MAX_MATH_VERIFY_CHARS:
        return False
    depth = deepest = 0
    for char in answer:
        depth += char == "{"
        depth -= char == "}"
        deepest = max(deepest, depth)
    return deepest <= MAX_BRACE_DEPTH


def as_math_verify_input(answer: str) -> str:
    """math-verify reads LaTeX inside math delimiters; wrap a bare answer in $...$."""
    inner = strip_latex_wrappers(answer).replace("$", "")
    return f"${inner}$"


def math_verify_equal(pred: str, gold: str) -> bool:
    """math-verify's equivalence with its signal-based timeouts off: call it only in a worker process
    whose caller enforces a timeout (see Verifier)."""
    from math_verify import parse, verify  # imported late: the fast paths never need sympy

    gold_parsed = parse(as_math_verify_input(gold), parsing_timeout=None)
    pred_parsed = parse(as_math_verify_input(pred), parsing_timeout=None)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def warm_up_math_verify() -> None:
    """Run math-verify once per kind of input (LaTeX, plain expression, interval): its parsers and
    sympy build caches on first use, which would otherwise count against the first answers' timeout."""
    for pred, gold in ((r"\frac{1}{2}", "0.5"), ("x^2+1", "1+x^2"), ("(1, 2]", r"(1,2]")):
        math_verify_equal(pred, gold)
