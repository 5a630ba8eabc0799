"""The verifier API: extract, judge by fast paths in-process, and send only the leftovers to math-verify."""

from __future__ import annotations

import atexit
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.verify.equivalence import Verdict, judge_fast
from pipeline.verify.extract import extract_answer
from pipeline.verify.math_verify_pool import TIMEOUT, MathVerifyPool


@dataclass
class VerifierConfig:
    workers: int = 2
    timeout_s: float = 5.0


@dataclass
class VerifyItem:
    text: str
    gold: str
    answer_type: str = "text"
    question_type: str = "free_form"
    choices: list[str] | None = None
    precision: int | None = None
    unit: str | None = None


class Verifier:
    def __init__(self, config: VerifierConfig = VerifierConfig()):
        self.config = config
        self._pool: MathVerifyPool | None = None
        self._lock = threading.Lock()

    def judge_many(self, items: Sequence[VerifyItem]) -> list[Verdict]:
        verdicts: list[Verdict | None] = []
        leftovers: list[tuple[int, str, str]] = []
        for index, item in enumerate(items):
            extraction = extract_answer(
                item.text, question_type=item.question_type, choices=item.choices, answer_type=item.answer_type
            )
            fast = judge_fast(
                extraction.answer,
                item.gold,
                answer_type=item.answer_type,
                question_type=item.question_type,
                choices=item.choices,
                precision=item.precision,
                unit=item.unit,
            )
            if fast is None:
                leftovers.append((index, item.gold, extraction.answer))
                verdicts.append(Verdict(False, "pending", extraction.answer, extraction.method))
            else:
                verdicts.append(Verdict(fast.correct, fast.reason, extraction.answer, extraction.method))
        if leftovers:
            with self._lock:  # one caller at a time drives the worker processes
                if self._pool is None:
                    self._pool = MathVerifyPool(self.config.workers, self.config.timeout_s)
                outcomes = self._pool.equivalent([(gold, pred) for _, gold, pred in leftovers])
            for (index, _, _), outcome in zip(leftovers, outcomes):
                pending = verdicts[index]
                reason = {TIMEOUT: "math_verify_timeout", True: "math_verify", False: "math_verify"}.get(outcome, "math_verify_error")
                verdicts[index] = Verdict(outcome is True, reason, pending.extracted, pending.method)
        return verdicts  # type: ignore[return-value]

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_shared: Verifier | None = None
_shared_lock = threading.Lock()


def judge_response(
    text: str,
    *,
    gold: str,
    answer_type: str = "text",
    question_type: str = "free_form",
    choices: list[str] | None = None,
    precision: int | None = None,
    unit: str | None = None,
) -> Verdict:
    """One response, judged like `Verifier.judge_many` (a process-wide verifier serves the leftovers)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Verifier(VerifierConfig(workers=1))
            atexit.register(_shared.close)
    item = VerifyItem(text, gold, answer_type, question_type, choices, precision, unit)
    return _shared.judge_many([item])[0]


def judge_answer(
    pred: str | None,
    gold: str,
    *,
    answer_type: str = "text",
    question_type: str = "free_form",
    choices: list[str] | None = None,
    precision: int | None = None,
    unit: str | None = None,
) -> Verdict:
    """An already extracted answer against the gold answer."""
    if pred is None:
        return Verdict(False, "no_answer")
    return judge_response(
        f"\\boxed{{{pred}}}", gold=gold, answer_type=answer_type, question_type=question_type,
        choices=choices, precision=precision, unit=unit,
    )
