"""CoT quality gates, each with its reason."""

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.paths import REPO_ROOT
from pipeline.verify import QualityConfig, check_cot_quality
from pipeline.verify.quality import repeated_fraction

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from bench_verify_speed import plain_repeated_fraction  # noqa: E402  (the gate's definition, written plainly)

GOOD = "First add the two prices: 4 + 3 = 7. Then subtract the discount of 2, which leaves 5. The answer is 5."
THINK = f"<think>{GOOD}</think> The answer is 5."


@pytest.mark.parametrize(
    "text, finish_reason, config, reason",
    [
        (GOOD, None, QualityConfig(), "ok"),
        (GOOD, "stop", QualityConfig(), "ok"),
        (THINK, None, QualityConfig(require_think=True), "ok"),
        (GOOD, "length", QualityConfig(), "truncated"),
        ("<think>" + GOOD, None, QualityConfig(), "truncated"),
        (GOOD, None, QualityConfig(require_think=True), "missing_think"),
        ("</think>" + GOOD + "<think>", None, QualityConfig(), "malformed_think"),
        (THINK + THINK, None, QualityConfig(), "malformed_think"),
        ("5", None, QualityConfig(), "too_short"),
        (GOOD * 400, None, QualityConfig(), "too_long"),
        ("Add the two prices, then subtract.", None, QualityConfig(require_marked_answer=True), "missing_answer"),
        (GOOD[:60] + " Wait, let me recount the items again." * 40, None, QualityConfig(), "degenerate_repetition"),
        ((GOOD + "\n") * 2, None, QualityConfig(), "ok"),  # saying it twice is not a loop
        ("a" * 5000, None, QualityConfig(), "degenerate_repetition"),
    ],
)
def test_quality_reasons(text, finish_reason, config, reason):
    result = check_cot_quality(text, finish_reason=finish_reason, config=config)
    assert (result.ok, result.reason) == (reason == "ok", reason)


def test_repeated_fraction_scores_loops_high_and_prose_low():
    assert repeated_fraction(GOOD, 10) == 0.0
    assert repeated_fraction("step one two three four five six seven eight nine ten. " * 20, 10) > 0.9
    assert repeated_fraction(GOOD + GOOD, 10, min_count=3) == 0.0


def test_a_real_recorded_loop_is_caught():
    # gsm8k/175b_finetuning #756 in shared/data, abridged: the model cycles through the same three steps
    loop = "".join(
        "Subtracting x from both sides, we get 33 = 2x\nDividing both sides by 2, we get 33 / 2 = 2x / 2\n"
        "Multiplying both sides by 2, we get 33 * 2 = 2x * 2\nAdding x to both sides, we get 33 + x = 2x + x\n"
        for _ in range(6)
    )
    assert check_cot_quality("Let the votes against be x.\n" + loop).reason == "degenerate_repetition"


# Loops of words, symbols and non-ASCII text (which takes the vocabulary path), runs longer than 8 characters.
PIECES = st.sampled_from(["the", "sum", "is", "12", "=", "+", "x_1", "Wait,", "aaaaaaaaaaaaaaaaaaaa", "über", "答案", "\\frac{1}{2}", ".", "\n"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(PIECES, min_size=1, max_size=12), min_size=1, max_size=8), st.lists(st.integers(0, 7), max_size=40), st.sampled_from([(5, 2), (10, 3), (20, 3)]))
def test_repeated_fraction_is_its_definition(phrases, order, settings_):
    """The compiled kernels (ASCII ids packed in 64 bits, n-grams hashed) agree exactly with the plain
    definition, on texts that loop, restate and run on."""
    text = " ".join(" ".join(phrases[i % len(phrases)]) for i in order or [0]) * (1 + len(order) % 4)
    ngram, min_count = settings_
    assert repeated_fraction(text, ngram, min_count) == pytest.approx(plain_repeated_fraction(text, ngram, min_count), abs=1e-12)
