"""Numbers in prose: the answer of a response without an answer marker, and the value of a marked one."""

from __future__ import annotations

import re

from pipeline.verify.extract.refusal import REFUSAL
from pipeline.verify.model import Extraction
from pipeline.verify.normalize import parse_number

# A number that stands for itself: not an exponent or index, not the coefficient of a term ("24π", "5x",
# "3\\sqrt{2}") and not the first operand of an expression ("158 + LK").
_NUMBER_IN_TEXT = re.compile(
    r"(?<![\^_\w])-?\$?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?%?"
    r"(?!\d|\.\d|\s*(?:π|\\pi|√|\\sqrt)|[a-zA-Z](?![a-zA-Z])|\s*[+*/^×·]\s*[\w\\(]|\s*-\s*[a-zA-Z\\])"
)
_LEADING_NUMBER = re.compile(r"(-?\$?\d[\d,]*(?:\.\d+)?%?)\s+(?!and\b|or\b|to\b|,|/|-)[a-z]")
_BOLD_NUMBER = re.compile(r"\*\*\s*(-?\$?\d[\d,]*(?:\.\d+)?%?)\s*\*\*")
# A sentence (decimal points do not end it) that opens with a word announcing a result.
_CONCLUSION = re.compile(
    r"(?:^|(?<=[.!?\n]))[\s*]*(?:therefore|thus|so|hence|in total|total|overall|finally)\b(?:[^.!?\n]|\.(?=\d))*",
    re.IGNORECASE,
)


def last_number(text: str) -> str | None:
    """The last number written in `text` ("$1,200.50", "3/4", "-2", "15%"), or None."""
    numbers = _NUMBER_IN_TEXT.findall(text)
    return numbers[-1].rstrip(",") if numbers else None


def fallback_number(text: str) -> Extraction:
    """The number a response without an answer marker gives as its answer: none if its last sentence
    declines to answer; else the last concluding sentence's ("Therefore ...") bold or last number;
    else the first number set in bold; else the last number."""
    if REFUSAL.search(last_sentence(text)):
        return Extraction(None, "refusal")
    for conclusion in reversed(_CONCLUSION.findall(text)):
        bold = _BOLD_NUMBER.search(conclusion)
        number = bold[1] if bold else last_number(conclusion)
        if number is not None:
            return Extraction(number, "conclusion_number")
    bold = _BOLD_NUMBER.search(text)
    if bold:
        return Extraction(bold[1], "bold_number")
    number = last_number(text)
    return Extraction(number, "last_number") if number is not None else Extraction(None, "none")


def last_sentence(text: str) -> str:
    body = text.rstrip().rstrip(".!?")
    return body[max(body.rfind(stop) for stop in (". ", "? ", "! ", "\n")) + 1 :].strip()


def numeric_core(answer: str) -> str:
    """For numeric answer types: the value of "x = 5", the only number of "about 5 m (rounded)", the
    leading number of "1982 with a total of $931,441". A list ("1 and 9") stays as it is."""
    if parse_number(answer) is not None or "\\" in answer:
        return answer
    after_equals = answer.rpartition("=")[2].strip()
    if after_equals and parse_number(after_equals) is not None:
        return after_equals
    numbers = _NUMBER_IN_TEXT.findall(answer)
    if len(numbers) == 1:
        return numbers[0].rstrip(",")
    leading = _LEADING_NUMBER.match(answer)
    return leading[1] if leading else answer
