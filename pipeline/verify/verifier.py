"""Batch verification: extraction and fast paths inline, math-verify for the leftovers in killable workers."""

from __future__ import annotations

import atexit
import dataclasses
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.verify.equivalence import Decision, comparable_gold, decide_fast, math_verify_equal
from pipeline.verify.extract import extract_answer
from pipeline.verify.model import AnswerSpec, Extraction, Verdict
from pipeline.verify.pool import TIMEOUT, KillablePool, TaskResult


@dataclass
class VerifierConfig:
    workers: int = 2  # math-verify worker processes
    timeout_s: float = 5.0  # per answer, enforced from outside the worker
    cache_size: int = 100_000  # remembered math-verify outcomes per (pred, gold)


@dataclass(frozen=True)
class VerifyItem:
    """One response to judge against its problem's gold answer."""

    text: str
    gold: str
    answer_type: str = "text"
    question_type: str = "free_form"
    choices: Sequence[str] | None = None
    precision: int | None = None
    unit: str | None = None
    question: str | None = None  # shown to a judge model (see model_extractor.py), not used by the rules

    @classmethod
    def for_row(cls, text: str, row: Mapping[str, Any]) -> VerifyItem:
        """`text` as a response to a Problem or RL-set row."""
        return cls(text, **dataclasses.asdict(AnswerSpec.from_row(row)), question=row.get("question"))

    def spec(self) -> AnswerSpec:
        return AnswerSpec.of(
            self.gold,
            answer_type=self.answer_type,
            question_type=self.question_type,
            choices=self.choices,
            precision=self.precision,
            unit=self.unit,
        )


class Verifier:
    """Judges many responses at once; thread-safe; one set of worker processes, started on first need.

    `answer_extractor` (optional, e.g. model_extractor.ModelExtractor): fills in the answers the rules
    leave undecided (extraction method "none"), never any other."""

    def __init__(self, config: VerifierConfig | None = None, answer_extractor=None):
        config = config or VerifierConfig()
        self.config = config
        self.answer_extractor = answer_extractor
        self._pool = KillablePool(
            config.workers,
            config.timeout_s,
            preload=("pipeline.verify.equivalence:warm_up_math_verify",),
        )
        self._cache: dict[tuple[str, str], Decision] = {}
        self._cache_lock = threading.Lock()

    def start(self, *, wait: bool = False) -> None:
        """Start the math-verify workers ahead of the first batch (otherwise judge_many does)."""
        self._pool.start(wait=wait)

    def judge_many(self, items: Sequence[VerifyItem]) -> list[Verdict]:
        self._pool.start()  # workers import sympy while this process runs the fast paths
        specs = [item.spec() for item in items]
        extractions = [_extract(item.text, spec) for item, spec in zip(items, specs)]
        if self.answer_extractor is not None:
            extractions = self.answer_extractor.fill(extractions, items)
        decisions = self.decide_many([extraction.answer for extraction in extractions], specs)
        # A correct final answer with rivals beside it counts only if they are all correct too.
        challenged = [(i, rival) for i, (decision, e) in enumerate(zip(decisions, extractions)) if decision[0] for rival in e.rivals]
        rival_decisions = self.decide_many([rival for _, rival in challenged], [specs[i] for i, _ in challenged])
        for (index, _), rival in zip(challenged, rival_decisions):
            if not rival[0]:
                decisions[index] = (False, "conflicting_answers")
        return [_verdict(decision, extraction) for decision, extraction in zip(decisions, extractions)]

    def decide_many(self, answers: Sequence[str | None], specs: Sequence[AnswerSpec]) -> list[Decision]:
        """Fast paths inline, math-verify in the workers for what they leave open."""
        fast = [decide_fast(answer, spec) for answer, spec in zip(answers, specs)]
        leftovers = [i for i, decision in enumerate(fast) if decision is None]
        # `or ""` only for the type: decide_fast decides every missing or empty answer itself
        slow = dict(zip(leftovers, self.math_verify_many([(answers[i] or "", comparable_gold(specs[i])) for i in leftovers])))
        return [slow[i] if decision is None else decision for i, decision in enumerate(fast)]

    def math_verify_many(self, pairs: Sequence[tuple[str, str]]) -> list[Decision]:
        """math-verify decisions for (pred, gold) pairs, each under the outer timeout."""
        with self._cache_lock:  # the pool runs one batch at a time anyway
            unknown = list(dict.fromkeys(pair for pair in pairs if pair not in self._cache))
            fresh = dict(zip(unknown, map(_decision_of, self._pool.map(math_verify_equal, unknown))))
            decisions = [fresh[pair] if pair in fresh else self._cache[pair] for pair in pairs]
            if len(self._cache) + len(fresh) > self.config.cache_size:
                self._cache.clear()
            # timeouts and errors may pass on a quieter machine: only settled outcomes are remembered
            self._cache.update((pair, decision) for pair, decision in fresh.items() if decision[1] == "math_verify")
            return decisions

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _decision_of(result: TaskResult) -> Decision:
    if result.error is None:
        return bool(result.value), "math_verify"
    return False, "math_verify_timeout" if result.error == TIMEOUT else "math_verify_error"


def _verdict(decision: Decision, extraction: Extraction) -> Verdict:
    return Verdict(decision[0], decision[1], extraction.answer, extraction.method)


def _extract(text: str, spec: AnswerSpec) -> Extraction:
    return extract_answer(text, question_type=spec.question_type, choices=spec.choices, answer_type=spec.answer_type)


def _judge_one(extraction: Extraction, spec: AnswerSpec, verifier: Verifier | None) -> Verdict:
    """Fast paths inline; only an undecided answer starts (the shared) math-verify workers."""
    decision = _decide_one(extraction.answer, spec, verifier)
    if decision[0] and not all(_decide_one(rival, spec, verifier)[0] for rival in extraction.rivals):
        decision = (False, "conflicting_answers")
    return _verdict(decision, extraction)


def _decide_one(answer: str | None, spec: AnswerSpec, verifier: Verifier | None) -> Decision:
    decision = decide_fast(answer, spec)
    if decision is None:
        decision = (verifier or shared_verifier()).math_verify_many([(answer or "", comparable_gold(spec))])[0]  # answer: never None here
    return decision


_shared_verifier: Verifier | None = None
_shared_lock = threading.Lock()


def shared_verifier() -> Verifier:
    """The process-wide verifier behind judge_answer/judge_response (one worker, closed at exit)."""
    global _shared_verifier
    with _shared_lock:
        if _shared_verifier is None:
            _shared_verifier = Verifier(VerifierConfig(workers=1))
            atexit.register(_shared_verifier.close)
        return _shared_verifier


def judge_answer(
    pred: str | None,
    gold: str,
    *,
    answer_type: str = "text",
    question_type: str = "free_form",
    choices: Sequence[str] | None = None,
    precision: int | None = None,
    unit: str | None = None,
    verifier: Verifier | None = None,
) -> Verdict:
    """Judge an already extracted answer. Fast paths inline; math-verify (if needed) runs in
    `verifier`'s workers, by default a shared one-worker verifier."""
    spec = AnswerSpec.of(
        gold, answer_type=answer_type, question_type=question_type, choices=choices, precision=precision, unit=unit
    )
    return _judge_one(Extraction(pred, "given"), spec, verifier)


def judge_response(
    text: str,
    *,
    gold: str,
    answer_type: str = "text",
    question_type: str = "free_form",
    choices: Sequence[str] | None = None,
    precision: int | None = None,
    unit: str | None = None,
    verifier: Verifier | None = None,
) -> Verdict:
    """Extract the final answer of a response, then judge it (as judge_answer does)."""
    spec = VerifyItem(text, gold, answer_type, question_type, choices, precision, unit).spec()
    return _judge_one(_extract(text, spec), spec, verifier)
