"""VAS's peers on hand-computed cases: DAPO's dynamic sampling (selection, merge, the loop inside the real TRL
trainer) and GRESO's skipping rule (probabilities, adaptation, the sampler)."""

from __future__ import annotations

from collections import Counter

import datasets
import numpy as np
import pytest
import torch
from trl import GRPOTrainer

from pipeline.models.tiny import build_tiny_text_lm, train_tokenizer
from pipeline.train.config import TrainConfig, VASConfig
from pipeline.train.peers import (
    DynamicSamplingConfig,
    GRESOConfig,
    GRESOState,
    adapt_exploration,
    concat_rollout_rows,
    dynamic_sampling_selection,
    greso_skip_probability,
    is_informative,
    skip_filtered,
)
from pipeline.train.run import build_trainer
from pipeline.train.sampler import SkipSampler

T, F = True, False


def test_informative_means_not_all_equal():
    assert is_informative([1, 0, 1]) and is_informative([0.5, 0.0])
    assert not is_informative([1, 1, 1]) and not is_informative([0, 0]) and not is_informative([])


def test_dynamic_sampling_keeps_the_first_informative_groups_and_drops_exactly_the_all_equal_ones():
    rounds = [[T, F, T, F], [F, T, T, T]]  # 2 informative in round 0, 3 in the refill
    assert dynamic_sampling_selection(rounds, batch=4) == [(0, 0), (0, 2), (1, 1), (1, 2)]  # (1, 3): surplus
    assert dynamic_sampling_selection([[F, F], [T, F], [F, T]], batch=2) == [(1, 0), (2, 1)]


def test_dynamic_sampling_completes_a_short_batch_with_the_earliest_zero_variance_groups():
    # Rounds exhausted with one informative group: the batch keeps its size, padded with gradient-free groups.
    assert dynamic_sampling_selection([[F, F, T], [F, F, F]], batch=3) == [(0, 0), (0, 1), (0, 2)]
    assert dynamic_sampling_selection([[F, F], [F, T]], batch=3) == [(0, 0), (0, 1), (1, 1)]


def test_concat_rollout_rows_repads_each_side_as_trl_does():
    pad = 9
    first = {
        "prompt_ids": torch.tensor([[9, 1, 2], [3, 4, 5]]), "prompt_mask": torch.tensor([[0, 1, 1], [1, 1, 1]]),
        "completion_ids": torch.tensor([[6, 9], [7, 8]]), "completion_mask": torch.tensor([[1, 0], [1, 1]]),
        "advantages": torch.tensor([0.5, -0.5]), "num_items_in_batch": torch.tensor(3), "old_per_token_logps": None,
    }
    second = {
        "prompt_ids": torch.tensor([[1, 2, 3, 4]]), "prompt_mask": torch.tensor([[1, 1, 1, 1]]),
        "completion_ids": torch.tensor([[5, 6, 7]]), "completion_mask": torch.tensor([[1, 1, 1]]),
        "advantages": torch.tensor([1.0]), "num_items_in_batch": torch.tensor(3), "old_per_token_logps": None,
    }
    merged = concat_rollout_rows([first, second], [(0, 0), (1, 0)], pad)
    assert merged["prompt_ids"].tolist() == [[9, 9, 1, 2], [1, 2, 3, 4]]  # left padded
    assert merged["prompt_mask"].tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]
    assert merged["completion_ids"].tolist() == [[6, 9, 9], [5, 6, 7]]  # right padded
    assert merged["completion_mask"].tolist() == [[1, 0, 0], [1, 1, 1]]
    assert merged["advantages"].tolist() == [0.5, 1.0] and int(merged["num_items_in_batch"]) == 4
    assert "old_per_token_logps" not in merged
    with pytest.raises(ValueError, match="text rollouts only"):
        concat_rollout_rows([{**first, "num_images": [1, 1]}], [(0, 0)], pad)


@pytest.fixture(scope="module")
def addition_trainer_parts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("peers")
    rows = [{"problem_id": f"p{i}", "prompt": [{"role": "user", "content": f"{i}+{i}="}], "answer": str(2 * i),
             "answer_type": "integer"} for i in range(8)]
    model = build_tiny_text_lm(folder / "model", tokenizer=train_tokenizer(vocab_size=512, vision=False))
    return folder, datasets.Dataset.from_list(rows), model


def test_dynamic_sampling_inside_the_trl_trainer_refills_to_a_full_batch_and_counts_every_rollout(
    addition_trainer_parts, monkeypatch
):
    folder, dataset, model = addition_trainer_parts
    config = TrainConfig(rl_dataset_dir=folder, output_dir=folder / "run", model_path=model, num_generations=2,
                         prompts_per_step=2, max_completion_length=4, max_steps=1, vas=VASConfig(vas_lambda=0.0),
                         dynamic_sampling=DynamicSamplingConfig(max_rounds=4))
    trainer = build_trainer(config, dataset, model)
    # Scripted accuracies per rollout round (2 prompts x 2 rollouts): round 0 one informative group, round 1 none,
    # round 2 two (one surplus). TRL's own generation and rewards are replaced by them; the rest is the real loop.
    script = iter([[1, 0, 1, 1], [0, 0, 1, 1], [0, 1, 1, 0]])
    seen_prompts = []

    def scripted(self, inputs):
        accuracy = torch.tensor(next(script), dtype=torch.float32)
        seen_prompts.append([row["problem_id"] for row in inputs])
        rewards = torch.stack([accuracy, torch.zeros(4)], dim=1)
        self._record_rollouts(inputs, rewards, [[5 + i] * (1 + i) for i in range(4)])
        width = len(seen_prompts)  # each round pads to another width
        return {"prompt_ids": torch.arange(4 * width).view(4, width), "prompt_mask": torch.ones(4, width, dtype=torch.long),
                "completion_ids": torch.full((4, 2), width), "completion_mask": torch.ones(4, 2, dtype=torch.long),
                "advantages": accuracy - accuracy.view(2, 2).mean(1).repeat_interleave(2), "num_items_in_batch": torch.tensor(8)}

    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", scripted)
    trainer._get_train_sampler()
    trainer.model.train()
    batch = trainer._generate_and_score_completions([dataset[0], dataset[0], dataset[1], dataset[1]])
    assert len(seen_prompts) == 3 and all(len(p) == 4 for p in seen_prompts)  # two refills of a whole batch
    assert trainer.vas_history.rollouts_generated == 12 and trainer.vas_history.groups_generated == 6
    assert trainer.vas_history.zero_variance_groups == 3
    # Kept: round 0 group 0, round 2 group 0 -> 4 rows, the batch size; prompts padded on the left to width 3.
    assert batch["prompt_ids"].shape == (4, 3) and batch["completion_ids"][:, 0].tolist() == [1, 1, 3, 3]
    assert batch["advantages"].tolist() == [0.5, -0.5, -0.5, 0.5] and int(batch["num_items_in_batch"]) == 8
    trainer.close_rewards()


@pytest.mark.parametrize(
    ("streak", "length", "expected"),
    [
        (None, 0, 0.0),  # never zero-variance: never skipped
        ("easy", 1, 0.5),  # 1 - 0.5
        ("easy", 2, 0.75),  # 1 - 0.5^2
        ("hard", 1, 0.7),  # p_hard = 0.3
        ("hard", 3, 1 - 0.027),
        ("easy", 10, 0.99),  # 0.5^10 < 0.01: the floor keeps a 1% chance
    ],
)
def test_greso_skip_probability_follows_one_minus_p_to_the_streak(streak, length, expected):
    assert greso_skip_probability(streak, length, p_easy=0.5, p_hard=0.3) == pytest.approx(expected)


def test_greso_exploration_moves_by_one_step_toward_the_target_within_bounds():
    config = GRESOConfig()
    assert adapt_exploration(0.5, observed_share=0.2, target_share=0.1, config=config) == pytest.approx(0.49)
    assert adapt_exploration(0.5, observed_share=0.05, target_share=0.1, config=config) == pytest.approx(0.51)
    assert adapt_exploration(0.05, 0.2, 0.1, config) == pytest.approx(0.05)  # p_min
    assert adapt_exploration(0.95, 0.0, 0.1, config) == pytest.approx(0.95)  # p_max


def test_greso_state_tracks_streaks_and_adapts_from_a_steps_groups():
    state = GRESOState()
    for rewards in ([1, 1], [1, 1]):
        state.observe("a", rewards)
    assert state.streaks["a"] == ("easy", 2)
    state.observe("a", [0, 0])
    assert state.streaks["a"] == ("hard", 1)  # the kind changed: a new streak
    state.observe("a", [1, 0])
    assert state.streaks["a"] == (None, 0)
    state.observe("b", [0, 0])
    assert state.skip_probabilities(["a", "b", "never-seen"]).tolist() == pytest.approx([0.0, 0.5, 0.0])
    # 1 easy, 2 hard, 1 informative group: easy share 0.25 >= 0.25/3 and hard share 0.5 >= 0.5/3: both skip more.
    state.adapt([[1, 1], [0, 0], [0, 0], [1, 0]])
    assert (state.p_easy, state.p_hard) == pytest.approx((0.49, 0.49))
    state.adapt([[1, 0]] * 4)  # no zero-variance groups: both explore more
    assert (state.p_easy, state.p_hard) == pytest.approx((0.5, 0.5))
    restored = GRESOState()
    restored.load_state_dict(state.state_dict())
    assert restored.streaks == state.streaks and restored.p_easy == state.p_easy


def test_skip_filtered_keeps_survivors_in_order_and_fills_from_the_earliest_skipped():
    always_skip_1_and_2 = np.array([0.0, 1.0, 1.0, 0.0])
    assert skip_filtered([3, 1, 2, 0], always_skip_1_and_2, count=2, seed=0) == [3, 0]
    assert skip_filtered([3, 1, 2, 0], always_skip_1_and_2, count=3, seed=0) == [3, 0, 1]
    # Candidate 0 (skip probability 0.75) survives about one draw in four; otherwise candidate 1 takes its place.
    first = [skip_filtered([0, 1], np.array([0.75, 0.0]), count=1, seed=seed) for seed in range(2000)]
    assert abs(first.count([0]) / 2000 - 0.25) < 0.03 and first.count([1]) + first.count([0]) == 2000


def test_skip_sampler_keeps_batches_full_and_rarely_hands_out_a_long_zero_variance_streak():
    data = list(range(10))
    skip = np.zeros(10)
    skip[[0, 1]] = 0.99  # e.g. ten all-correct groups in a row at p_easy = 0.5
    sampler = SkipSampler(data, mini_repeat_count=2, batch_size=4, seed=3, skip_fn=lambda: skip)
    batches = [batch for _ in range(50) for batch in sampler.batches()]
    assert all(len(batch) == 4 == len(set(batch)) for batch in batches)
    counts = Counter(index for batch in batches for index in batch)
    assert counts[0] + counts[1] < 0.02 * sum(counts.values())
    assert min(counts[i] for i in range(2, 10)) > 0
    indices = list(SkipSampler(data, mini_repeat_count=2, batch_size=4, seed=3, skip_fn=lambda: skip))
    assert indices[0] == indices[1] and len(indices) == len(sampler)  # TRL's repeat contract
