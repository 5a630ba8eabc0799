"""Extraction, equivalence and quality checks on the hard cases, adversarial inputs, and real data."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from pipeline.verify import QualityConfig, Verifier, VerifierConfig, VerifyItem, check_cot_quality, extract_answer, judge_response
from pipeline.verify.math_verify_pool import TIMEOUT, MathVerifyPool

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.fixture(scope="module")
def verifier():
    with Verifier(VerifierConfig(workers=2, timeout_s=5)) as shared:
        yield shared


def judge(verifier, text, gold, **fields):
    return verifier.judge_many([VerifyItem(text=text, gold=gold, **fields)])[0]


@pytest.mark.parametrize(
    "text, expected, method",
    [
        (r"so \boxed{\frac{1}{\boxed{2}}} hmm, finally \boxed{\frac{3}{4}}", r"\frac{3}{4}", "boxed"),
        (r"\boxed{{a}+{b}}", "{a}+{b}", "boxed"),
        ("<think>2+2</think><answer> 4 </answer>", "4", "answer_tag"),
        ("Janet sells 9 eggs.\n#### 18", "18", "hash_marks"),
        ("She makes $18.\nA: 18", "18", "a_colon"),
        ("The mean is 85.875. The answer is 85.875.", "85.875", "the_answer_is"),
        ("The total is 7 apples, then 12 pears", "12", "last_number"),
    ],
)
def test_extraction_forms(text, expected, method):
    extraction = extract_answer(text, answer_type="integer")
    assert (extraction.answer, extraction.method) == (expected, method)


def test_last_number_only_where_the_answer_type_allows():
    assert extract_answer("Blue has 3 more.", answer_type="text").answer is None
    assert extract_answer("Blue has 3 more.", answer_type="integer").answer == "3"


@pytest.mark.parametrize(
    "text",
    ["The answer is (B).", "The answer is B.", "The answer is 5cm.", "The answer is (B) 5cm.", "So the answer is option B", "I pick **(B) 5cm**"],
)
def test_multiple_choice_letter_text_or_both(verifier, text):
    verdict = judge(verifier, text, "5cm", question_type="multi_choice", choices=["4cm", "5cm", "6cm"])
    assert verdict.correct and verdict.extracted == "5cm"


def test_multiple_choice_wrong_option(verifier):
    verdict = judge(verifier, "The answer is (C).", "5cm", question_type="multi_choice", choices=["4cm", "5cm", "6cm"])
    assert not verdict.correct and verdict.reason == "choice"


@pytest.mark.parametrize(
    "pred, gold, fields, reason",
    [
        ("22,600", "22600", {}, "numeric"),
        ("$1,234.50", "1234.5", {}, "numeric"),
        ("3/4", "0.75", {}, "numeric"),
        (r"\frac{3}{4}", "0.75", {}, "numeric"),
        ("75%", "0.75", {}, "percent"),
        ("11.0 cm", "11", {"unit": "cm"}, "numeric"),
        ("1.2345", "1.23", {"precision": 2}, "numeric_precision"),
        ("−7", "-7", {}, "exact"),
        ("Yes", "yes", {}, "exact"),
        ("True", "yes", {}, "yes_no"),
        ("[1, 2, 3]", "[1,2,3.0]", {"answer_type": "list"}, "list"),
        (r"2\sqrt{2}", r"\sqrt{8}", {}, "math_verify"),
    ],
)
def test_equivalent_answers(verifier, pred, gold, fields, reason):
    verdict = judge(verifier, f"The answer is {pred}", gold, **fields)
    assert verdict.correct and verdict.reason == reason


@pytest.mark.parametrize(
    "pred, gold, fields",
    [("1.24", "1.23", {"precision": 2}), ("1 and 9", "1", {}), ("0.4662", "48/103", {}), ("Monday", "Friday", {})],
)
def test_different_answers(verifier, pred, gold, fields):
    assert not judge(verifier, f"The answer is {pred}.", gold, **fields).correct


def test_adversarial_inputs_get_a_clear_verdict_fast(verifier):
    huge_number = "9" * 1_000_000
    nested = "\\frac{" * 5_000 + "1" + "}{2}" * 5_000
    cases = [
        VerifyItem(text=f"The answer is {huge_number}", gold="9"),
        VerifyItem(text=f"\\boxed{{{huge_number}}}", gold="9"),
        VerifyItem(text=f"\\boxed{{{nested}}}", gold="1"),
        VerifyItem(text="The answer is " + "{" * 100_000, gold="1"),
        VerifyItem(text="blah " * 400_000, gold="1", answer_type="integer"),
        VerifyItem(text=r"The answer is \sqrt{\sqrt{\sqrt{x^{99999999}}}}", gold=r"x^{99999999/8}"),
    ]
    started = time.perf_counter()
    verdicts = verifier.judge_many(cases)
    assert time.perf_counter() - started < 15
    assert [v.correct for v in verdicts[:5]] == [False] * 5
    assert all(v.reason for v in verdicts)


def test_a_hanging_math_verify_call_is_killed_and_the_pool_recovers():
    pool = MathVerifyPool(workers=1, timeout_s=0.05)
    try:
        slow = (r"\int_0^1 x^{2} \sin(x) dx", r"\int_0^1 x^{2} \sin(x) dx + 0")
        assert pool.equivalent([slow])[0] == TIMEOUT  # 50 ms is too short even to start sympy work
        pool.timeout_s = 20
        assert pool.equivalent([("2^{1/2}", r"\sqrt{2}")]) == [True]
    finally:
        pool.close()


def test_judge_response_single_call():
    verdict = judge_response("so x = 4, and the answer is \\boxed{4}", gold="4", answer_type="integer")
    assert verdict.correct and verdict.method == "boxed"


@pytest.mark.parametrize(
    "text, finish_reason, config, reason",
    [
        ("<think>" + "step " * 50, "length", QualityConfig(), "truncated"),
        ("<think>" + "step " * 50, "stop", QualityConfig(), "truncated"),
        ("</think> x <think>" + "a " * 30, "stop", QualityConfig(), "malformed_think"),
        ("x = 4", "stop", QualityConfig(), "too_short"),
        ("reasoning " * 20 + "\\boxed{4}", "stop", QualityConfig(require_think=True), "missing_think"),
        ("<think>" + "reasoning " * 20 + "</think> so 4", "stop", QualityConfig(require_answer=True), "missing_answer"),
        ("<think>" + "and then we add one more " * 60 + "</think>\\boxed{4}", "stop", QualityConfig(), "degenerate_repetition"),
        ("<think>" + " ".join(f"step {i} adds {i}" for i in range(40)) + "</think>\\boxed{4}", "stop", QualityConfig(require_answer=True), "ok"),
    ],
)
def test_quality_checks_name_their_reason(text, finish_reason, config, reason):
    assert check_cot_quality(text, finish_reason=finish_reason, config=config).reason == reason


def test_agreement_with_official_labels_on_the_real_recorded_outputs(verifier, data_root):
    from bench_verify import labelled_items

    rows = labelled_items(data_root)
    by_source = {}
    for source in ("tabmwp", "gsm8k"):
        sample = [r for r in rows if r[0] == source][:600]
        verdicts = verifier.judge_many([r[2] for r in sample])
        by_source[source] = sum(v.correct == r[3] for v, r in zip(verdicts, sample)) / len(sample)
    assert by_source["gsm8k"] == 1.0 and by_source["tabmwp"] >= 0.95
