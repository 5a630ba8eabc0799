"""Find the final answer in a (long) chain of thought; map multiple-choice answers to the option text."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pipeline.verify.model import MAX_SCAN_CHARS, NUMERIC_ANSWER_TYPES, Extraction
from pipeline.verify.normalize import normalize_text, parse_number

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_MAX_BOXES_TRIED = 5  # bounds the brace scans when the tail holds many (unbalanced) boxes
_ANSWER_PHRASES = (
    ("the_answer_is", re.compile(
        r"\banswer\s*\**\s*(?:is|:|=|would be|will be|should be)\s*[:*]*[ \t]*(?P<answer>[^\n]+)", re.IGNORECASE)),
    ("gsm8k_hash", re.compile(r"^####\s*(?P<answer>[^\n]+)", re.MULTILINE)),
    ("answer_line", re.compile(r"^\s*A:\s*(?P<answer>[^\n]+)", re.MULTILINE)),
)
# Where an answer phrase ends: a sentence stop, a clause break or an explanation.
_SPAN_END = re.compile(r"[.!?](?:\s|$)|;|,\s|\s(?:because|since|which|as|so|and therefore)\s", re.IGNORECASE)
_NUMBER_IN_TEXT = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?%?")
_WHOLE_RESPONSE_MAX_CHARS = 60  # a response this short, on one line, is its own answer

_LETTER_ONLY = re.compile(r"^\(?([A-Za-z])\)?$")
_LETTER_LEADING = re.compile(r"^(?:option|choice)?\s*\(?([A-Z])(?:\)|[.:]\s|\s+\(|\s*$)")
_LETTER_BRACKETED = re.compile(r"\(([A-Z])\)")


def extract_answer(
    text: str,
    *,
    question_type: str = "free_form",
    choices: Sequence[str] | None = None,
    answer_type: str = "text",
) -> Extraction:
    """The final answer of `text`: marked answers first (answer tag, last box, "the answer is ..."), then
    for multiple choice the option the response names, for numeric types the last number."""
    tail = (text or "")[-MAX_SCAN_CHARS:]
    marked = find_marked_answer(tail)
    if question_type == "multi_choice" and choices:
        return _extract_choice(tail, marked, list(choices))
    if marked is not None:
        answer = marked.answer
        if answer_type in NUMERIC_ANSWER_TYPES:
            answer = _numeric_core(answer)
        return Extraction(answer, marked.method)
    numeric = answer_type in NUMERIC_ANSWER_TYPES
    if _is_short_single_line(tail) and (not numeric or parse_number(tail) is not None):
        return Extraction(tail.strip(), "whole_response")
    if numeric:
        last = last_number(tail)
        if last is not None:
            return Extraction(last, "last_number")
    return Extraction(None, "none")


def find_marked_answer(text: str) -> Extraction | None:
    """An explicitly marked final answer: <answer> tag, else the last balanced \\boxed{}, else the last
    answer phrase ("The answer is", "Answer:", GSM8K's "####" and "A:")."""
    tagged = _ANSWER_TAG.findall(text)
    if tagged:
        inner = tagged[-1].strip()
        return Extraction(last_boxed(inner) or inner, "answer_tag")
    boxed = last_boxed(text)
    if boxed is not None:
        return Extraction(boxed, "boxed")
    best: tuple[int, str, str] | None = None
    for method, pattern in _ANSWER_PHRASES:
        for match in pattern.finditer(text):
            if best is None or match.start() > best[0]:
                best = (match.start(), method, match["answer"])
    if best is None:
        return None
    span = trim_answer_span(best[2])
    return Extraction(span, best[1]) if span else None


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} whose braces balance (nested braces allowed), else None."""
    starts = [match.end() for match in _BOXED.finditer(text)]
    for start in reversed(starts[-_MAX_BOXES_TRIED:]):
        end = _matching_brace(text, start)
        if end is not None:
            return text[start:end].strip()
    return None


def _matching_brace(text: str, start: int) -> int | None:
    """Index of the "}" closing the "{" just before `start`, or None if it never closes."""
    depth = 1
    for position in range(start, len(text)):
        char = text[position]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return position
    return None


def trim_answer_span(span: str) -> str:
    """Cut an answer phrase at its sentence end ("1.2. So ..." -> "1.2") and drop markdown emphasis."""
    span = span.replace("**", "").strip()
    end = _first_break_outside_brackets(span)
    return span[:end].strip().rstrip(".").strip()


def _first_break_outside_brackets(span: str) -> int:
    for match in _SPAN_END.finditer(span):
        before = span[: match.start()]
        if sum(before.count(c) for c in "([{") == sum(before.count(c) for c in ")]}"):
            return match.start()
    return len(span)


def last_number(text: str) -> str | None:
    """The last number written in `text` ("$1,200.50", "3/4", "-2", "15%"), or None."""
    numbers = _NUMBER_IN_TEXT.findall(text)
    return numbers[-1].rstrip(",") if numbers else None


def _numeric_core(answer: str) -> str:
    """For numeric answer types: the value of "x = 5", or the first number of "about 5 m (rounded)"."""
    if parse_number(answer) is not None or "\\" in answer:
        return answer
    after_equals = answer.rpartition("=")[2].strip()
    if after_equals and parse_number(after_equals) is not None:
        return after_equals
    numbers = _NUMBER_IN_TEXT.findall(answer)
    return numbers[0].rstrip(",") if numbers else answer


def _is_short_single_line(text: str) -> bool:
    stripped = text.strip()
    return 0 < len(stripped) <= _WHOLE_RESPONSE_MAX_CHARS and "\n" not in stripped


def _extract_choice(tail: str, marked: Extraction | None, choices: list[str]) -> Extraction:
    """Map the marked answer (or, failing that, the response's last line) to one of `choices`."""
    candidates = [marked] if marked is not None else []
    last_line = tail.strip().rpartition("\n")[2]
    candidates.append(Extraction(last_line, "last_line"))
    for candidate in candidates:
        matched = match_choice(candidate.answer, choices)
        if matched is not None:
            index, by_letter = matched
            return Extraction(choices[index], "choice_letter" if by_letter else candidate.method)
    return marked if marked is not None else Extraction(None, "none")


def match_choice(answer: str, choices: Sequence[str]) -> tuple[int, bool] | None:
    """(index, matched_by_letter) of the option `answer` names: its text, "B", "(B)", "B.", "(B) 5cm",
    an equal number, or the only option text it contains. None when it names none or several."""
    normalized = normalize_text(answer)
    options = [normalize_text(choice) for choice in choices]
    if normalized in options:
        return options.index(normalized), False
    letter = _letter_of(answer.strip().replace("**", ""))
    if letter is not None and letter < len(choices):
        return letter, True
    number = parse_number(answer)
    if number is not None:
        equal = [i for i, choice in enumerate(choices) if (parsed := parse_number(choice)) and parsed.value == number.value]
        if len(equal) == 1:
            return equal[0], False
    contained = {i for i, option in enumerate(options) if option and _contains_phrase(normalized, option)}
    if len(contained) == 1:
        return contained.pop(), False
    return None


def _letter_of(answer: str) -> int | None:
    for pattern in (_LETTER_ONLY, _LETTER_LEADING):
        match = pattern.match(answer)
        if match:
            return ord(match[1].upper()) - ord("A")
    bracketed = _LETTER_BRACKETED.findall(answer)
    if len(set(bracketed)) == 1:
        return ord(bracketed[0]) - ord("A")
    return None


def _contains_phrase(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(phrase)}(?![\w]|\.\d)", text) is not None
