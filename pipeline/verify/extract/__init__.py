"""Find the final answer in a (long) chain of thought; map multiple-choice answers to the option text.

Only the answer to THIS question counts: a response that runs on past its answer is cut there first
(`region.py`). Order of evidence: an <answer> tag; otherwise the LAST explicit marker (`markers.py`, the
one registry of answer markers; found by `located.py`); otherwise, only where the answer type allows,
what the prose emphasises or concludes (`numbers.py`). Multiple choice maps the answer to an option
(`choice.py`). Conflicting evidence is no answer: several options named at once, or (see
`Extraction.rivals`) a different answer stated right next to the final one, which the verifier judges too.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.verify.extract.choice import extract_choice, match_choice
from pipeline.verify.extract.located import find_marked_answer, last_boxed, located_answers, rival, trim_answer_span, unbox
from pipeline.verify.extract.numbers import fallback_number, numeric_core
from pipeline.verify.extract.region import answer_region, continuation_start
from pipeline.verify.model import MAX_SCAN_CHARS, NUMERIC_ANSWER_TYPES, Extraction
from pipeline.verify.normalize import parse_number

# what the verifier, its quality checks and the training rewards use
__all__ = ["continuation_start", "extract_answer", "find_marked_answer", "last_boxed", "match_choice", "trim_answer_span", "unbox"]

_WHOLE_RESPONSE_MAX_CHARS = 60  # a response this short, on one line, is its own answer


def extract_answer(
    text: str,
    *,
    question_type: str = "free_form",
    choices: Sequence[str] | None = None,
    answer_type: str = "text",
) -> Extraction:
    """The final answer of `text` (up to where it runs on past its answer). Multiple choice: the option
    that the latest marked answer names (its text, letter, or number), else the option the closing
    sentences name. Numeric types fall back to the numbers of the prose; text types to a response short
    enough to be the answer itself."""
    tail = answer_region(text or "")[-MAX_SCAN_CHARS:]
    located = located_answers(tail)
    if question_type == "multi_choice" and choices:
        return extract_choice(tail, located, list(choices))
    numeric = answer_type in NUMERIC_ANSWER_TYPES
    if located:
        best = located[0].extraction
        stated_beside = rival(tail, located)
        answer = numeric_core(located[0].answer) if numeric else best.answer
        rivals = () if stated_beside is None else (numeric_core(stated_beside) if numeric else stated_beside,)
        return Extraction(answer, best.method, rivals)
    if _is_short_single_line(tail) and (not numeric or parse_number(tail) is not None):
        return Extraction(tail.strip(), "whole_response")
    if numeric:
        return fallback_number(tail)
    return Extraction(None, "none")


def _is_short_single_line(text: str) -> bool:
    stripped = text.strip()
    return 0 < len(stripped) <= _WHOLE_RESPONSE_MAX_CHARS and "\n" not in stripped
