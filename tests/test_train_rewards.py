"""Reward functions as TRL calls them: completions plus the RL set's gold columns as keyword lists."""

from __future__ import annotations

import pytest

from pipeline.train.rewards import AccuracyReward, build_reward_functions, completion_text, format_reward


@pytest.fixture(scope="module")
def accuracy():
    reward = AccuracyReward()
    yield reward
    reward.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>16 - 3 - 4 = 9, 9 * 2 = 18</think> The answer is \\boxed{18}.", 1.0),
        ("<think>read the table</think><answer>shortage</answer>", 1.0),
        ("The answer is \\boxed{18}.", 0.0),  # no reasoning block
        ("<think>never closed \\boxed{18}", 0.0),
        ("<think>a</think> no final answer", 0.0),
        ("<think>a</think><think>b</think> \\boxed{1}", 0.0),  # a second block
        ("\\boxed{1} <think>a</think>", 0.0),  # the answer must come after the reasoning
    ],
)
def test_format_reward(text, expected):
    assert format_reward([text]) == [expected]


def test_accuracy_reward_on_rl_columns(accuracy):
    completions = [
        "<think>16 - 3 - 4 = 9 eggs, 9 * 2</think> \\boxed{18}",
        "<think>guess</think> \\boxed{17}",
        [{"role": "assistant", "content": "<think>x</think> \\boxed{18}"}],  # conversational completion
        "<think>demand exceeds supply</think> \\boxed{shortage}",
        "<think>sum / 8</think> \\boxed{3.50}",
    ]
    rewards = accuracy(
        completions,
        answer=["18", "18", "18", "shortage", "3.5"],
        answer_type=["integer", "integer", "integer", "text", "float"],
        question_type=["free_form", "free_form", "free_form", "multi_choice", "free_form"],
        choices=[None, None, None, ["shortage", "surplus"], None],
        precision=[None, None, None, None, 1],
        unit=[None] * 5,
        trainer_state=None,  # TRL's extra kwargs are ignored
    )
    assert rewards == [1.0, 0.0, 1.0, 1.0, 1.0]


def test_completion_text_reads_typed_parts():
    parts = [{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert completion_text(parts) == "ab"


def test_reward_functions_are_named_for_trl():
    funcs, weights = build_reward_functions()
    assert [getattr(f, "__name__") for f in funcs] == ["accuracy", "format_reward"]
    assert weights == [1.0, 0.1]
    funcs[0].close()
