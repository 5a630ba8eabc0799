"""Find the final answer in a long chain of thought.

Anchored forms are tried from the most to the least explicit (\\boxed{}, <answer>, GSM8K's '####'
and 'A:', 'the answer is'); the last occurrence wins because models restate and correct themselves.
A bare last number is used only for numeric answer types. Multiple-choice answers are mapped to the
text of the chosen option, whether the model wrote a letter, the option text, or both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_SEARCH_CHARS = 100_000  # answers sit at the end; a longer text is searched in its tail only
MAX_ANSWER_CHARS = 1_000
TAIL_CHARS = 3_000  # searched first: the final answer almost always sits in the last paragraphs
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
NUMERIC_TYPES = ("integer", "float", "fraction", "list")


@dataclass(frozen=True)
class Extraction:
    answer: str | None
    method: str  # "boxed", "answer_tag", "hash_marks", "a_colon", "the_answer_is", "bold", "choice_letter", "choice_text", "last_number", "none"


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_HASH_MARKS = re.compile(r"####\s*([^\n]+)")
_A_COLON = re.compile(r"(?m)^\s*A:\s*([^\n]+)")
_THE_ANSWER_IS = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=|would be|will be)\s*:?\s*([^\n]+)", re.I
)
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:\s*/\s*\d+)?%?(?![\w])")
_LETTER_ALONE = re.compile(r"^\(?\s*([A-Z])\s*[).:]?(?:\s+.*)?$", re.S)
_LETTER_ANYWHERE = re.compile(r"\(([A-Z])\)")
_BOLD = re.compile(r"\*\*([^*\n]{1,80})\*\*")
_SHORT_LINE_WORDS = 8  # a longer last line mentions options in passing ("there is no context")
_OPTION_WORD = re.compile(r"\b(?:option|choice|answer choice|answer)\s*\(?([A-Z])\)?(?![\w])", re.I)


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} / \\fbox{...}, braces matched (nested boxes allowed)."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    index = text.find("{", start)
    if index < 0 or text[start:index].strip() not in ("\\boxed", "\\fbox"):
        tail = text[start:].split(maxsplit=2)
        return tail[1] if len(tail) > 1 and tail[0] in ("\\boxed", "\\fbox") else None
    depth, begin = 0, index + 1
    for position in range(index, min(len(text), index + MAX_ANSWER_CHARS * 4)):
        char = text[position]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[begin:position]
    return None  # unbalanced or longer than any answer: treat as absent


def _clean(candidate: str) -> str:
    """Strip what surrounds an answer in prose: markdown, $...$, a trailing period, quotes."""
    candidate = candidate.strip().strip("*").strip()
    candidate = re.sub(r"^\$+|\$+$", "", candidate).strip()
    candidate = re.sub(r"\\text\{([^{}]*)\}", r"\1", candidate)
    candidate = candidate.rstrip(" .;,!").strip().strip('"').strip("'").strip()
    return candidate


def _last(pattern: re.Pattern, text: str) -> str | None:
    """The last match, looking at the tail first: long responses cost a tail scan, not a full one."""
    for window in ((text[-TAIL_CHARS:], text) if len(text) > TAIL_CHARS else (text,)):
        matches = pattern.findall(window)
        if matches:
            return matches[-1]
    return None


def _normalise_choice(text: str) -> str:
    return re.sub(r"[\s$.,;:!?\"'`*]+", " ", text.lower()).strip()


def map_to_choice(candidate: str, choices: list[str]) -> tuple[str | None, str]:
    """The option a candidate answer names: by letter, by exact text, or by the one option it contains."""
    letter = _LETTER_ALONE.match(candidate.strip())
    if letter and letter.group(1) in LETTERS[: len(choices)]:
        return choices[LETTERS.index(letter.group(1))], "choice_letter"
    wanted = _normalise_choice(candidate)
    normalised = [_normalise_choice(c) for c in choices]
    if wanted in normalised:
        return choices[normalised.index(wanted)], "choice_text"
    contained = [i for i, c in enumerate(normalised) if c and re.search(rf"(?<!\w){re.escape(c)}(?!\w)", wanted)]
    if contained:  # the longest option the answer mentions ("quarter past" over "quarter")
        best = max(contained, key=lambda i: len(normalised[i]))
        if sum(1 for i in contained if len(normalised[i]) == len(normalised[best])) == 1:
            return choices[best], "choice_text"
    option = _last(_OPTION_WORD, candidate)
    if option and option.upper() in LETTERS[: len(choices)]:
        return choices[LETTERS.index(option.upper())], "choice_letter"
    return None, "none"


def _anchored(text: str) -> Extraction | None:
    boxed = last_boxed(text)
    if boxed is not None and boxed.strip():
        return Extraction(_clean(boxed), "boxed")
    for pattern, method in (
        (_ANSWER_TAG, "answer_tag"),
        (_HASH_MARKS, "hash_marks"),
        (_A_COLON, "a_colon"),
        (_THE_ANSWER_IS, "the_answer_is"),
        (_BOLD, "bold"),  # chat models often set the final answer in markdown bold
    ):
        found = _last(pattern, text)
        if found is not None and _clean(found):
            inner = last_boxed(found)
            return Extraction(_clean(inner if inner else found), method)
    return None


def last_number(text: str) -> str | None:
    for window in ((text[-TAIL_CHARS:], text) if len(text) > TAIL_CHARS else (text,)):
        numbers = [m.group(0) for m in _NUMBER.finditer(window) if any(ch.isdigit() for ch in m.group(0))]
        if numbers:
            return numbers[-1]
    return None


def extract_answer(
    text: str, *, question_type: str = "free_form", choices: list[str] | None = None, answer_type: str = "text"
) -> Extraction:
    if not text or not text.strip():
        return Extraction(None, "none")
    text = text[-MAX_SEARCH_CHARS:]
    anchored = _anchored(text)
    if question_type == "multi_choice" and choices:
        if anchored is not None:
            mapped, how = map_to_choice(anchored.answer, choices)
            if mapped is not None:
                return Extraction(mapped, how)
        # No usable anchor: the last option letter the text names, e.g. "which is answer choice (D)".
        for pattern in (_OPTION_WORD, _LETTER_ANYWHERE):
            letter = _last(pattern, text)
            if letter and letter.upper() in LETTERS[: len(choices)]:
                return Extraction(choices[LETTERS.index(letter.upper())], "choice_letter")
        last_line = next((line for line in reversed(text.strip().splitlines()) if line.strip()), "")
        if len(last_line.split()) <= _SHORT_LINE_WORDS:
            mapped, how = map_to_choice(last_line, choices)
            if mapped is not None:
                return Extraction(mapped, how)
        return anchored or Extraction(None, "none")
    if anchored is not None:
        return anchored if len(anchored.answer) <= MAX_ANSWER_CHARS else Extraction(None, "none")
    if answer_type in NUMERIC_TYPES:
        number = last_number(text)
        if number is not None:
            return Extraction(number, "last_number")
    return Extraction(None, "none")
