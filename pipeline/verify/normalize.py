"""Pure normalisation of answer strings: LaTeX wrappers, text, numbers (thousands, currency, %, a/b)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from pipeline.verify.model import MAX_NUMBER_CHARS

_LATEX_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_LATEX_DROPPED = re.compile(r"\\left|\\right|\\displaystyle|\\[,;:! ]|\\quad|\\qquad")
_LATEX_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°")
_MATH_DELIMITERS = re.compile(r"^\s*(?:\$\$?|\\\(|\\\[)\s*(.*?)\s*(?:\$\$?|\\\)|\\\])\s*$", re.DOTALL)
_EDGE_PUNCTUATION = " \t\r\n.,;:!?\"'`*_"
_WHITESPACE = re.compile(r"\s+")
_CACHE_SIZE = 1 << 16  # gold answers and options recur across a batch; these are pure functions


@lru_cache(maxsize=_CACHE_SIZE)
def strip_latex_wrappers(answer: str) -> str:
    """Remove typesetting that carries no value: math delimiters, \\text{}, spacing, degree marks."""
    if "\x0c" in answer or "\x08" in answer:  # "\\frac", "\\boxed" read from JSON with one backslash
        answer = answer.replace("\x0c", "\\f").replace("\x08", "\\b")
    if not answer.isascii():
        answer = unicodedata.normalize("NFKC", answer).replace("\u2212", "-")
        answer = _LATEX_DEGREES.sub("", answer)
    if "$" in answer or "\\" in answer:  # the regexes below only matter for (La)TeX
        delimited = _MATH_DELIMITERS.match(answer)
        if delimited:
            answer = delimited.group(1)
        answer = _LATEX_TEXT_WRAPPER.sub(r"\1", answer)
        answer = _LATEX_DROPPED.sub(" ", answer)
        answer = _LATEX_DEGREES.sub("", answer)
        answer = answer.replace("\\%", "%").replace("\\$", "$").replace("{,}", ",").replace("~", " ")
        answer = answer.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return answer.strip()


_MATH_SPACING = re.compile(r"\s+|\$|~|\\[,;:! ]")
_BRACED_SCRIPT = re.compile(r"([\^_])\{(\w)\}")


@lru_cache(maxsize=_CACHE_SIZE)
def compact_form(answer: str) -> str:
    """`answer` without any spacing or math delimiters and with one-character scripts unbraced: the same
    for "$2+2 \\sqrt{2}$" and "2+2\\sqrt{2}", "1:1" and "$1: 1$", "2002^2" and "$2002^{2}$"."""
    text = _MATH_SPACING.sub("", strip_latex_wrappers(answer))
    return _BRACED_SCRIPT.sub(r"\1\2", text).lower().strip(".")


@lru_cache(maxsize=_CACHE_SIZE)
def normalize_text(answer: str) -> str:
    """Case-, space- and edge-punctuation-insensitive form of a text answer."""
    text = _WHITESPACE.sub(" ", strip_latex_wrappers(answer)).lower()
    text = text.strip(_EDGE_PUNCTUATION)
    if len(text) >= 2 and text[0] + text[-1] in ("()", "[]", "{}") and _balanced_inner(text):
        text = text[1:-1].strip(_EDGE_PUNCTUATION)
    return text


def _balanced_inner(text: str) -> bool:
    """Whether the outer bracket pair of `text` encloses the whole string (so "(a)" but not "(a)(b)")."""
    depth = 0
    for position, char in enumerate(text):
        depth += char in "([{"
        depth -= char in ")]}"
        if depth == 0 and position < len(text) - 1:
            return False
    return True


_BOOLEAN_WORDS = {"yes": "yes", "true": "yes", "correct": "yes", "no": "no", "false": "no", "incorrect": "no"}


def canonical_boolean(answer: str) -> str | None:
    """ "yes"/"no" for the usual spellings of a boolean answer, else None."""
    return _BOOLEAN_WORDS.get(normalize_text(answer))


def leading_boolean(answer: str) -> str | None:
    """The yes/no a short informal answer opens with ("Yes, it is." -> "yes"; "No. The bar is lower."),
    unless it also says the opposite."""
    words = [word.strip(",.!;:*") for word in normalize_text(answer).split()]
    said = _BOOLEAN_WORDS.get(words[0]) if words else None
    if said is None or any(_BOOLEAN_WORDS.get(word, said) != said for word in words[1:]):
        return None
    return said


@dataclass(frozen=True)
class ParsedNumber:
    """A number as written: exact value, decimal places written, and how it was written."""

    value: Fraction
    decimals: int  # digits after the decimal point as written (0 for integers and fractions)
    is_percent: bool = False
    is_fraction: bool = False


_NUMBER = re.compile(
    r"""^(?P<sign>[-+]?)\s*(?:[$€£¥]|rs\.?|usd)?\s*(?P<sign2>[-+]?)
    (?:
        (?P<numerator>\d+)\s*/\s*(?P<denominator>\d+)
      | (?P<decimal>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:e(?P<exponent>[-+]?\d{1,3}))?
    )
    \s*(?P<percent>%|percent)?\s*(?P<tail>[a-z][a-z .'/²³^-]{0,40}(?:\^\{?[23]\}?)?)?$""",
    re.VERBOSE,
)
_LATEX_FRACTION = re.compile(r"^([-+]?)\\frac\{(\d+)\}\{(\d+)\}")


@lru_cache(maxsize=_CACHE_SIZE)
def parse_number(answer: str, unit: str | None = None) -> ParsedNumber | None:
    """Parse "22,600", "$4.50", "-3/4", "75%", "1.2e3", "5 cm" (trailing unit words dropped), else None.

    Only simple \\frac{a}{b} of integers is read here; anything richer is math-verify's job.
    """
    text = normalize_text(answer)
    if unit:  # the problem's unit, before or after the number ("$", "cm^2"); other unit words drop below
        unit = unit.lower().strip()
        text = text.removesuffix(unit).removeprefix(unit).strip()
    if len(text) > MAX_NUMBER_CHARS:
        return None
    text = _LATEX_FRACTION.sub(r"\1\2/\3", text)
    match = _NUMBER.match(text)
    if not match:
        return None
    negative = (match["sign"] + match["sign2"]).count("-") % 2 == 1
    if match["numerator"] is not None:
        denominator = int(match["denominator"])
        if denominator == 0:
            return None
        value, decimals, is_fraction = Fraction(int(match["numerator"]), denominator), 0, True
    else:
        digits = match["decimal"].replace(",", "")
        value = Fraction(digits)
        if match["exponent"]:
            value *= Fraction(10) ** int(match["exponent"])
        decimals, is_fraction = len(digits.partition(".")[2]), False
    return ParsedNumber(-value if negative else value, decimals, bool(match["percent"]), is_fraction)
