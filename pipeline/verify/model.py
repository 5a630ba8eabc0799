"""Value types and limits shared by extraction, equivalence and the batch verifier."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

QUESTION_TYPES = frozenset({"free_form", "multi_choice"})
ANSWER_TYPES = frozenset({"integer", "float", "fraction", "text", "expression", "list", "boolean"})
NUMERIC_ANSWER_TYPES = frozenset({"integer", "float", "fraction"})
# The columns of a Problem (and RL-set) row that say what its gold answer is and how to compare with it.
ANSWER_FIELDS = ("answer", "answer_type", "question_type", "choices", "precision", "unit")

# Length caps applied before any parsing, so adversarial inputs get a fast, explicit verdict.
MAX_SCAN_CHARS = 20_000  # only the tail of a response is searched for its final answer
MAX_ANSWER_CHARS = 1_000  # a longer extracted (or gold) answer is rejected as "answer_too_long"
MAX_NUMBER_CHARS = 100  # longer digit strings are not converted to numbers at all
MAX_MATH_VERIFY_CHARS = 400  # math-verify (sympy) only ever sees short answers
MAX_BRACE_DEPTH = 20  # ... with shallow nesting


@dataclass(frozen=True)
class Extraction:
    """The final answer found in a response, and how it was found.

    Methods: "answer_tag", "boxed", "the_answer_is" ("The answer is", "Answer:", "答案是"),
    "correct_answer" ("X is the correct answer"), "gsm8k_hash" ("#### x"), "answer_line" ("A: x"),
    "choice_letter" (an option named by its letter), "last_line" (an option named in the closing
    sentences), "whole_response", "conclusion_number", "bold_number", "last_number", "refusal"
    (answer None: the response declines), "several_answers" (answer None: it names several options),
    "none" (nothing found: what a judge model may fill, see verify/model_extractor.py); "given" for
    answers passed to judge_answer; "model_extracted" for answers a judge model read, "model_garbage"
    (answer None) where its reply was no answer.

    `rivals`: different answers stated right beside the final one ("\\boxed{540}. The answer is: (C)",
    "(B) 35°"); the final answer counts as correct only if every rival is judged correct too.
    """

    answer: str | None
    method: str
    rivals: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """Whether a predicted answer matches the gold answer.

    `reason` names the path that decided: for a correct answer the fast path that matched ("exact",
    "numeric", "numeric_precision", "fraction", "percent", "choice", "list") or "math_verify"; for a
    wrong one "mismatch" (fast paths), "math_verify", "no_answer", "conflicting_answers" (a rival
    disagrees), "answer_too_long", "gold_too_long", "answer_too_complex", "math_verify_timeout" or
    "math_verify_error".
    """

    correct: bool
    reason: str
    extracted: str | None
    method: str


@dataclass(frozen=True)
class AnswerSpec:
    """What is known about a problem's gold answer: the judge_answer keyword fields."""

    gold: str
    answer_type: str = "text"
    question_type: str = "free_form"
    choices: tuple[str, ...] | None = None
    precision: int | None = None
    unit: str | None = None

    @classmethod
    def of(
        cls,
        gold: str,
        *,
        answer_type: str | None = "text",  # None (a missing field): the default
        question_type: str | None = "free_form",
        choices=None,
        precision: int | float | None = None,
        unit: str | None = None,
    ) -> AnswerSpec:
        """Build from loosely typed row fields (lists, float precisions from JSON, empty units)."""
        return cls(
            gold=str(gold),
            answer_type=answer_type or "text",
            question_type=question_type or "free_form",
            choices=tuple(str(c) for c in choices) if choices else None,
            precision=None if precision is None or precision != precision else int(precision),  # NaN: none
            unit=unit or None,
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AnswerSpec:
        """From a Problem or RL-set row (any mapping with the ANSWER_FIELDS columns; missing ones default)."""
        return cls.of(row["answer"], **{name: row.get(name) for name in ANSWER_FIELDS[1:]})

    @property
    def is_multi_choice(self) -> bool:
        return self.question_type == "multi_choice" and bool(self.choices)

    @property
    def is_numeric(self) -> bool:
        return self.answer_type in NUMERIC_ANSWER_TYPES
