"""Explicitly marked answers and where they are: the last <answer> tag, boxes, answer phrases.

Order of evidence: an <answer> tag; otherwise the LAST explicit marker (a balanced \\boxed{}, "the
answer is ...", "Answer:", "X is the correct answer", GSM8K's "####"/"A:"; see `markers.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.verify.extract.markers import ANSWER_BEFORE, ANSWER_PHRASES, ANSWER_TAG, BOXED, MAX_CANDIDATES_PER_MARKER
from pipeline.verify.model import Extraction
from pipeline.verify.normalize import normalize_text

_CONDITIONAL = re.compile(r"\W*(?:if|unless|when|suppose)\b", re.IGNORECASE)  # "If x > 3, the answer is A."
# Where an answer phrase ends: a sentence stop, a clause break or an explanation.
_SPAN_END = re.compile(
    r"[.!?](?:\s|$)|\$?\.(?=The\b)|[;。，]|,\s(?!\(?[A-Z]\)?(?:,|\s+(?:and|or)\b|\.|$)|(?:and|or)\s+\(?[A-Z]\b)|\s(?:because|since|which|as|so|and therefore)\s",
    re.IGNORECASE,
)
_SPAN_GAP_MAX_CHARS = 150  # a stated answer this close before the final one is stated alongside it
ALNUM = re.compile(r"\w")
_PRONOUNS = frozenset({"this", "that", "it", "which", "this option", "that option", "this choice", "so"})


@dataclass(frozen=True)
class LocatedAnswer:
    start: int
    end: int
    extraction: Extraction

    @property
    def answer(self) -> str:
        """The located text: every located answer has one (an Extraction's is None only for a refusal or a miss)."""
        if self.extraction.answer is None:
            raise ValueError(f"a located answer at {self.start}-{self.end} without text")
        return self.extraction.answer


def find_marked_answer(text: str) -> Extraction | None:
    """The explicitly marked final answer, if any."""
    marked = marked_answers(text)
    return marked[0] if marked else None


def marked_answers(text: str) -> list[Extraction]:
    """Explicitly marked answers, most authoritative first (see `located_answers`)."""
    return [located.extraction for located in located_answers(text)]


def located_answers(text: str) -> list[LocatedAnswer]:
    """Explicitly marked answers and where they are, most authoritative first: the last <answer> tag,
    then every box and answer phrase from the last one backwards (phrases inside "If ..." sentences are
    conditions; a box inside an answer phrase counts once, as the phrase with the box opened)."""
    tagged = list(ANSWER_TAG.pattern.finditer(text))  # tag and box have no pre-checks: their patterns, directly
    if tagged:
        inner = tagged[-1][1].strip()
        return [LocatedAnswer(tagged[-1].start(), tagged[-1].end(), Extraction(last_boxed(inner) or inner, ANSWER_TAG.method))]
    found: list[LocatedAnswer] = []
    for start in [match.end() for match in BOXED.pattern.finditer(text)][-MAX_CANDIDATES_PER_MARKER:]:
        end = _matching_brace(text, start)
        if end is not None:
            found.append(LocatedAnswer(start, end, Extraction(text[start:end].strip(), BOXED.method)))
    phrases: list[LocatedAnswer] = []
    boxed_phrases: list[tuple[int, int]] = []  # where phrases whose answer holds a box are
    for marker in ANSWER_PHRASES:
        for match in marker.finditer(text)[-MAX_CANDIDATES_PER_MARKER:]:
            span = trim_answer_span(match["answer"])
            if ALNUM.search(span) and not _in_conditional_sentence(text, match.start()):
                phrases.append(LocatedAnswer(match.start(), match.end(), Extraction(unbox(span), marker.method)))
                if BOXED.pattern.search(span):
                    boxed_phrases.append((match.start(), match.end()))
    for match in ANSWER_BEFORE.finditer(text)[-MAX_CANDIDATES_PER_MARKER:]:
        start = _sentence_start(text, match.start())
        span = trim_answer_span(_last_clause(text[start : match.start()]))
        if ALNUM.search(span) and normalize_text(span) not in _PRONOUNS:
            phrases.append(LocatedAnswer(start, match.end(), Extraction(unbox(span), ANSWER_BEFORE.method)))
            if BOXED.pattern.search(span):
                boxed_phrases.append((start, match.start()))
    boxes = [box for box in found if not any(start <= box.start <= end for start, end in boxed_phrases)]
    return sorted([*boxes, *phrases], key=lambda located: located.start, reverse=True)


def rival(text: str, located: list[LocatedAnswer]) -> str | None:
    """A different answer stated right before the final one ("\\boxed{540}. The answer is: (C)"), which
    must agree with it for the final answer to count; farther back, an earlier answer is a revision."""
    if len(located) < 2:
        return None
    final, previous = located[0], located[1]
    if final.extraction.method == previous.extraction.method == BOXED.method:
        return None  # boxed intermediate results ("Path 1: \\boxed{1} tree. ... a total of \\boxed{3}")
    gap = text[previous.end : final.start]
    if len(gap) > _SPAN_GAP_MAX_CHARS or previous.extraction.answer == final.extraction.answer:
        return None
    return previous.extraction.answer


def unbox(span: str) -> str:
    """The answer with every balanced \\boxed{...} opened ("12 - 3 = \\boxed{9}" -> "12 - 3 = 9") and an
    unclosed leading one dropped ("\\boxed{D." -> "D")."""
    for _ in range(MAX_CANDIDATES_PER_MARKER):
        match = BOXED.pattern.search(span)
        if match is None:
            break
        end = _matching_brace(span, match.end())
        if end is None:
            return span[match.end() :].strip() if match.start() == 0 else span
        span = span[: match.start()] + span[match.end() : end] + span[end + 1 :]
    return span.strip()


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} whose braces balance (nested braces allowed), else None."""
    starts = [match.end() for match in BOXED.pattern.finditer(text)]
    for start in reversed(starts[-MAX_CANDIDATES_PER_MARKER:]):
        end = _matching_brace(text, start)
        if end is not None:
            return text[start:end].strip()
    return None


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


def _last_clause(sentence: str) -> str:
    """ "Based on this, we conclude that option (B) 70" -> "we conclude that option (B) 70"."""
    return re.split(r",\s|;\s", sentence)[-1]


def _sentence_start(text: str, position: int) -> int:
    return max(text.rfind(stop, 0, position) for stop in (". ", "? ", "! ", ": ", "\n")) + 1


def _in_conditional_sentence(text: str, position: int) -> bool:
    return _CONDITIONAL.match(text, _sentence_start(text, position)) is not None
