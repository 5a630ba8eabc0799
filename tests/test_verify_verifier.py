"""Batch Verifier and its killable worker pool: math-verify off the caller's process, outer timeouts."""

import os
import threading
import time

import pytest

from pipeline.verify import Verifier, VerifierConfig, VerifyItem, judge_answer, judge_response
from pipeline.verify.pool import TIMEOUT, WORKER_DIED, KillablePool

HANGS_SYMPY = "9^{9^{9^{9^{9}}}}"  # math-verify tries to evaluate it and never returns


@pytest.fixture(scope="module")
def verifier():
    with Verifier(VerifierConfig(workers=2, timeout_s=2.0)) as shared:
        yield shared


def test_judge_many_mixes_fast_paths_and_math_verify(verifier):
    items = [
        VerifyItem(r"so \boxed{\frac{3}{2^2}}", "0.75", answer_type="float"),
        VerifyItem("The answer is 22,600.", "22600", answer_type="integer"),
        VerifyItem(r"\boxed{\sqrt{8}}", r"2\sqrt{2}", answer_type="expression"),
        VerifyItem(r"\boxed{\sqrt{8}}", "3", answer_type="expression"),
        VerifyItem("The answer is (B) 5cm", "5cm", question_type="multi_choice", choices=["3cm", "5cm"]),
        VerifyItem("no idea", "4", answer_type="integer"),
    ]
    verdicts = verifier.judge_many(items)
    assert [(v.correct, v.reason) for v in verdicts] == [
        (True, "math_verify"),
        (True, "numeric"),
        (True, "math_verify"),
        (False, "mismatch"),  # a root of a non-square is never 3: settled without math-verify
        (True, "choice"),
        (False, "no_answer"),
    ]
    assert verdicts[4].extracted == "5cm" and verdicts[4].method == "choice_letter"


def test_a_hanging_answer_times_out_and_its_worker_is_replaced(verifier):
    replaced_before = verifier._pool.replaced
    started = time.monotonic()
    verdicts = verifier.judge_many(
        [
            VerifyItem(rf"\boxed{{{HANGS_SYMPY}}}", "1", answer_type="expression"),
            VerifyItem(r"\boxed{\sqrt{4}}", "2", answer_type="expression"),
        ]
    )
    assert time.monotonic() - started < 10
    assert (verdicts[0].correct, verdicts[0].reason) == (False, "math_verify_timeout")
    assert (verdicts[1].correct, verdicts[1].reason) == (True, "math_verify")
    assert verifier._pool.replaced == replaced_before + 1
    # the pool still works afterwards
    assert verifier.judge_many([VerifyItem(r"\boxed{2^{10}}", "1024", answer_type="expression")])[0].correct


@pytest.mark.parametrize(
    "text, answer_type, reason",
    [
        ("1" * 10**6, "integer", "answer_too_long"),  # a 10^6-digit number
        (r"\boxed{" + "{" * 5000 + "2" + "}" * 5000 + "}", "expression", "answer_too_long"),
        # the box opens before the scanned tail of the response
        (r"\boxed{" + "{" * 10**5 + "2" + "}" * 10**5 + "}", "expression", "no_answer"),
        (r"\boxed{" + r"\sqrt{" * 100 + "2" + "}" * 100 + "}", "expression", "answer_too_complex"),
        ("Let me think. " * 100_000 + "The answer is", "integer", "no_answer"),
    ],
)
def test_adversarial_inputs_get_a_fast_clear_verdict(verifier, text, answer_type, reason):
    started = time.monotonic()
    verdict = verifier.judge_many([VerifyItem(text, "2", answer_type=answer_type)])[0]
    assert time.monotonic() - started < 1.0
    assert (verdict.correct, verdict.reason) == (False, reason)


def test_judge_many_is_safe_from_threads(verifier):
    items = [VerifyItem(rf"\boxed{{\sqrt{{{n * n}}}}}", str(n), answer_type="expression") for n in range(2, 12)]
    outcomes: list[list] = []
    threads = [threading.Thread(target=lambda: outcomes.append(verifier.judge_many(items))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 3 and all(v.correct for verdicts in outcomes for v in verdicts)


def test_single_call_helpers_use_a_verifier(verifier):
    assert judge_answer("0.75", "3/4", answer_type="float").reason == "fraction"  # no worker needed
    assert judge_answer(r"\sqrt{4}", "2", answer_type="expression", verifier=verifier).reason == "math_verify"
    verdict = judge_response("so the answer is $\\frac{3}{2^2}$", gold="0.75", answer_type="float", verifier=verifier)
    assert verdict.correct and verdict.method == "the_answer_is"


def test_pool_replaces_a_worker_that_dies_mid_task():
    pool = KillablePool(1, timeout_s=5.0, preload=["posix", "builtins"])  # os._exit lives in posix
    try:
        results = pool.map(os._exit, [(3,)])
        assert results[0].error == WORKER_DIED and pool.replaced == 1
        assert pool.map(abs, [(-2,)])[0].value == 2
    finally:
        pool.close()


def test_pool_kills_overrunning_tasks_and_reports_errors():
    pool = KillablePool(1, timeout_s=0.5, preload=["time", "builtins"])
    try:
        results = pool.map(time.sleep, [(0.0,), (30.0,), (0.0,)])
        assert [r.error for r in results] == [None, TIMEOUT, None]
        assert pool.map(int, [("x",)])[0].error.startswith("exception: ValueError")
        assert pool.map(os.getcwd, [()])[0].error.startswith("exception: PermissionError")  # not allowed
    finally:
        pool.close()
