"""Find the final answer in a (long) chain of thought; map multiple-choice answers to the option text.

Order of evidence: an <answer> tag; otherwise the LAST explicit marker (a balanced \\boxed{}, "the
answer is ...", "Answer:", "X is the correct answer", GSM8K's "####"/"A:"); otherwise, only where
the answer type allows, what the prose emphasises or concludes (see `fallback_number`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from pipeline.verify.model import MAX_ANSWER_CHARS, MAX_SCAN_CHARS, NUMERIC_ANSWER_TYPES, Extraction
from pipeline.verify.normalize import canonical_boolean, normalize_text, parse_number

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_MAX_CANDIDATES_PER_MARKER = 5  # bounds brace scans and choice matching on marker-heavy tails
_ANSWER_PHRASES = (
    (
        "the_answer_is",
        re.compile(
            r"\b(?:answer|choice|option)\s*\**\s*(?:is|:|=|would be|will be|should be)\s*[:*]*[ \t]*(?P<answer>[^\n]+)",
            re.IGNORECASE,
        ),
    ),
    ("the_answer_is", re.compile(r"答案(?:是|为)[:：]?\s*(?P<answer>[^\n]+)")),
    ("gsm8k_hash", re.compile(r"^####\s*(?P<answer>[^\n]+)", re.MULTILINE)),
    ("answer_line", re.compile(r"^\s*A:\s*(?P<answer>[^\n]+)", re.MULTILINE)),
)
# "Wednesday is the correct answer.": the answer is the sentence before the marker
_ANSWER_BEFORE = re.compile(r"\s+is the (?:correct|right|final) answer")
_CONDITIONAL = re.compile(r"\W*(?:if|unless|when|suppose)\b", re.IGNORECASE)  # "If x > 3, the answer is A."
# Where an answer phrase ends: a sentence stop, a clause break or an explanation.
_SPAN_END = re.compile(r"[.!?](?:\s|$)|[;。，]|,\s|\s(?:because|since|which|as|so|and therefore)\s", re.IGNORECASE)
_NUMBER_IN_TEXT = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?%?")
_WHOLE_RESPONSE_MAX_CHARS = 60  # a response this short, on one line, is its own answer

_LEADING_NUMBER = re.compile(r"(-?\$?\d[\d,]*(?:\.\d+)?%?)\s+(?!and\b|or\b|to\b|,|/|-)[a-z]")
_BOLD_NUMBER = re.compile(r"\*\*\s*(-?\$?\d[\d,]*(?:\.\d+)?%?)\s*\*\*")
# A sentence (decimal points do not end it) that opens with a word announcing a result.
_CONCLUSION = re.compile(
    r"(?:^|(?<=[.!?\n]))[\s*]*(?:therefore|thus|so|hence|in total|total|overall|finally)\b(?:[^.!?\n]|\.(?=\d))*",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"\b(?:cannot|can't|can not|unable to|impossible|not possible|insufficient|not enough information"
    r"|(?:is|are) not (?:provided|given)|without (?:the|more|further|additional|specific)"
    r"|does not provide|none of the (?:options|choices)|not (?:available )?in the (?:options|choices))\b",
    re.IGNORECASE,
)

_LETTER_ONLY = re.compile(r"^\(?([A-Za-z])\)?$")
_LETTER_LEADING = re.compile(r"^(?:option|choice)?\s*\(?([A-Z])(?:\)|[.:]\s|\s+\(|\s*$)")
_LETTER_BRACKETED = re.compile(r"\(([A-Z])\)")
_SENTENCE_BREAK = re.compile(r"(?<!\bMr\.)(?<!\bMs\.)(?<!\bMrs\.)(?<!\bDr\.)(?<=[.!?。])\s+")
_CLOSING_LINES = 3  # lines searched for a named option when nothing is marked ("I hope this helps" may follow)
_MIN_PROSE_OPTION_CHARS = 3  # in free prose, "no", "k" or "A" are words, not the naming of an option


def extract_answer(
    text: str,
    *,
    question_type: str = "free_form",
    choices: Sequence[str] | None = None,
    answer_type: str = "text",
) -> Extraction:
    """The final answer of `text`. Multiple choice: the option that the latest marked answer names (its
    text, letter, or number), else the option the closing sentences name. Numeric types fall back to
    the numbers of the prose; text types to a response short enough to be the answer itself."""
    tail = (text or "")[-MAX_SCAN_CHARS:]
    marked = marked_answers(tail)
    if question_type == "multi_choice" and choices:
        return _extract_choice(tail, marked, list(choices))
    numeric = answer_type in NUMERIC_ANSWER_TYPES
    if marked:
        best = marked[0]
        return Extraction(numeric_core(best.answer), best.method) if numeric else best
    if _is_short_single_line(tail) and (not numeric or parse_number(tail) is not None):
        return Extraction(tail.strip(), "whole_response")
    if numeric:
        return fallback_number(tail)
    return Extraction(None, "none")


def find_marked_answer(text: str) -> Extraction | None:
    """The explicitly marked final answer, if any."""
    marked = marked_answers(text)
    return marked[0] if marked else None


def marked_answers(text: str) -> list[Extraction]:
    """Explicitly marked answers, most authoritative first: the last <answer> tag, then every box and
    answer phrase from the last one backwards (phrases inside "If ..." sentences are conditions)."""
    tagged = _ANSWER_TAG.findall(text)
    if tagged:
        inner = tagged[-1].strip()
        return [Extraction(last_boxed(inner) or inner, "answer_tag")]
    found: list[tuple[int, Extraction]] = []
    for start in [match.end() for match in _BOXED.finditer(text)][-_MAX_CANDIDATES_PER_MARKER:]:
        end = _matching_brace(text, start)
        if end is not None:
            found.append((start, Extraction(text[start:end].strip(), "boxed")))
    for method, pattern in _ANSWER_PHRASES:
        for match in list(pattern.finditer(text))[-_MAX_CANDIDATES_PER_MARKER:]:
            span = trim_answer_span(match["answer"])
            if span and not _in_conditional_sentence(text, match.start()):
                found.append((match.start(), Extraction(span, method)))
    for match in list(_ANSWER_BEFORE.finditer(text))[-_MAX_CANDIDATES_PER_MARKER:]:
        start = _sentence_start(text, match.start())
        span = trim_answer_span(text[start : match.start()])
        if span:
            found.append((start, Extraction(span, "correct_answer")))
    return [extraction for _, extraction in sorted(found, key=lambda pair: pair[0], reverse=True)]


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} whose braces balance (nested braces allowed), else None."""
    starts = [match.end() for match in _BOXED.finditer(text)]
    for start in reversed(starts[-_MAX_CANDIDATES_PER_MARKER:]):
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


def _sentence_start(text: str, position: int) -> int:
    return max(text.rfind(stop, 0, position) for stop in (". ", "? ", "! ", ": ", "\n")) + 1


def _in_conditional_sentence(text: str, position: int) -> bool:
    return _CONDITIONAL.match(text, _sentence_start(text, position)) is not None


def trim_answer_span(span: str) -> str:
    """Cut an answer phrase at its sentence end ("1.2. So ..." -> "1.2") and drop markdown emphasis."""
    span = span.replace("**", "").strip()
    end = _first_break_outside_brackets(span)
    return span[:end].strip().rstrip(".").strip()


def _first_break_outside_brackets(span: str) -> int:
    depth = scanned = 0
    for match in _SPAN_END.finditer(span):
        for char in span[scanned : match.start()]:
            depth += (char in "([{") - (char in ")]}")
        scanned = match.start()
        if depth <= 0:
            return match.start()
    return len(span)


def last_number(text: str) -> str | None:
    """The last number written in `text` ("$1,200.50", "3/4", "-2", "15%"), or None."""
    numbers = _NUMBER_IN_TEXT.findall(text)
    return numbers[-1].rstrip(",") if numbers else None


def fallback_number(text: str) -> Extraction:
    """The number a response without an answer marker gives as its answer: none if its last sentence
    declines to answer; else the last concluding sentence's ("Therefore ...") bold or last number;
    else the first number set in bold; else the last number."""
    if _REFUSAL.search(last_sentence(text)):
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


def _is_short_single_line(text: str) -> bool:
    stripped = text.strip()
    return 0 < len(stripped) <= _WHOLE_RESPONSE_MAX_CHARS and "\n" not in stripped


def _extract_choice(tail: str, marked: list[Extraction], choices: list[str]) -> Extraction:
    """The option named by the latest marked answer that names one; without any marked answer, the
    option named by the latest sentence of the last lines that names one (none if a sentence after
    it declines to answer, without naming one)."""
    for candidate in marked:
        matched = match_choice(candidate.answer, choices)
        if matched is not None:
            return _choice_extraction(matched, choices, candidate.method)
    if marked:
        return marked[0]  # an answer that is none of the options
    closing_lines = [line for line in tail.strip().splitlines() if line.strip()][-_CLOSING_LINES:]
    for sentence in [s for line in closing_lines for s in _SENTENCE_BREAK.split(line)][::-1]:
        matched = match_choice(sentence, choices, in_prose=True)
        if matched is not None:
            return _choice_extraction(matched, choices, "last_line")
        if _REFUSAL.search(sentence):
            return Extraction(None, "refusal")
    return Extraction(None, "none")


def _choice_extraction(matched: tuple[int, bool], choices: list[str], method: str) -> Extraction:
    index, by_letter = matched
    return Extraction(choices[index], "choice_letter" if by_letter else method)


def match_choice(answer: str, choices: Sequence[str], *, in_prose: bool = False) -> tuple[int, bool] | None:
    """(index, matched_by_letter) of the option `answer` names, or None when it names none or several.

    In order: an option's exact text; a letter ("B", "(B)", "B.", "(B) 5cm", "B (5cm)"); an option's
    text up to case and spacing; an equal number; the only option text it contains. `in_prose`
    (a sentence, not an answer span) ignores contained options that are short common words, except
    a yes/no that opens or closes it ("No, he does not ...", "The statement is true.")."""
    if len(answer) > MAX_ANSWER_CHARS:
        return None
    stripped = answer.strip().replace("**", "").strip(" .")
    if stripped in choices:
        return list(choices).index(stripped), False
    letter = _letter_of(stripped)
    if letter is not None and letter < len(choices):
        return letter, True
    normalized = normalize_text(answer)
    options = [normalize_text(choice) for choice in choices]
    if normalized in options:
        return options.index(normalized), False
    number = parse_number(answer)
    if number is not None:
        values = [parsed.value if (parsed := parse_number(choice)) else None for choice in choices]
        if values.count(number.value) == 1:
            return values.index(number.value), False
    if in_prose:
        words = normalized.split()
        booleans = [canonical_boolean(option) for option in options]
        for edge_word in {words[0], words[-1]} if words else ():
            said = canonical_boolean(edge_word.strip(",.!"))
            if said is not None and booleans.count(said) == 1:
                return booleans.index(said), False
    contained = {
        i
        for i, option in enumerate(options)
        if option and _contains_phrase(normalized, option) and not (in_prose and _is_common_word(option))
    }
    if len(contained) == 1:
        return contained.pop(), False
    return None


def _is_common_word(option: str) -> bool:
    """Too common in prose to count as naming the option ("no", "k"; numbers are fine)."""
    short_word = len(option) < _MIN_PROSE_OPTION_CHARS and parse_number(option) is None
    return short_word or canonical_boolean(option) is not None


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
    return phrase in text and _phrase_pattern(phrase).search(text) is not None


@lru_cache(maxsize=4096)
def _phrase_pattern(phrase: str) -> re.Pattern:
    """`phrase` as a whole word or number ("8 cm" is not inside "18 cm", "1" not inside "1.5")."""
    return re.compile(rf"(?<![\w.]){re.escape(phrase)}(?![\w]|\.\d)")
