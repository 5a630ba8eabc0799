"""CoT quality gates, each with its reason."""

import pytest

from pipeline.verify import QualityConfig, check_cot_quality
from pipeline.verify.quality import repeated_fraction

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
