"""The verl adapter without verl: a stand-in DataProto and a stand-in trainer with `_fetch_one_gen_batch`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from pipeline.train import verl_adapter
from pipeline.train.verl_adapter import (
    VerlRunConfig,
    VerlVASSampler,
    shared_state,
    to_verl_row,
    vas_trainer_class,
    verl_compute_score,
    verl_overrides,
)


@dataclass
class StandInDataProto:
    """What the adapter reads from verl's DataProto: a tensor dict and numpy non-tensor arrays."""

    batch: dict[str, torch.Tensor]
    non_tensor_batch: dict[str, np.ndarray] = field(default_factory=dict)


class StandInRLHFDataset:
    """verl's RLHFDataset: sized, with the HF dataset as `.dataframe`."""

    def __init__(self, prompt_ids: list[str]):
        self.dataframe = {"problem_id": prompt_ids}

    def __len__(self) -> int:
        return len(self.dataframe["problem_id"])


def _scored_batch(indices, accuracy, responses, mask) -> StandInDataProto:
    return StandInDataProto(
        batch={"responses": torch.tensor(responses), "response_mask": torch.tensor(mask)},
        non_tensor_batch={"index": np.array(indices, dtype=object), "acc": np.array(accuracy)},
    )


@pytest.fixture(autouse=True)
def _fresh_states():
    verl_adapter._STATES.clear()
    yield
    verl_adapter._STATES.clear()


def test_sampler_reads_config_and_yields_unrepeated_indices():
    data = StandInRLHFDataset([f"p{i}" for i in range(10)])
    config = {"train_batch_size": 4, "seed": 3, "vas": {"vas_lambda": 0.0, "state_name": "run"}}
    sampler = VerlVASSampler(data, config)
    indices = list(sampler)
    assert len(indices) == len(sampler) == 8  # 2 full batches of 4, no rollout repeats
    assert len(set(indices)) == 8
    assert shared_state("run").prompt_ids == data.dataframe["problem_id"]


def test_scored_batch_updates_the_table_by_dataset_index_with_unpadded_ids():
    sampler = VerlVASSampler(StandInRLHFDataset(["a", "b", "c"]), {"train_batch_size": 1, "vas": {"state_name": "run"}})
    # Interleaved rollouts of prompts 0 and 2 (verl's uid differs per fetch; the index does not).
    batch = _scored_batch(
        indices=[0, 2, 0, 2],
        accuracy=[1.0, 0.0, 0.0, 0.0],
        responses=[[5, 6, 0], [7, 7, 7], [5, 9, 0], [7, 7, 7]],
        mask=[[1, 1, 0], [1, 1, 1], [1, 1, 0], [1, 1, 1]],
    )
    sampler.update(batch)
    scores = shared_state("run").table.scores
    assert set(scores) == {"a", "c"}
    assert scores["a"].pass_rate == 0.5 and scores["c"].pass_rate == 0.0
    assert scores["a"].diversity == 1.0  # bigrams (5,6) and (5,9): padding removed, both distinct
    assert scores["c"].diversity == 0.25  # 2 identical rollouts of [7,7,7]: bigram (7,7) x 4 -> 1/4
    weights = sampler.state.weights()
    assert weights[0] > weights[2]  # a (p = 1/2) over c (all wrong)


def test_trainer_subclass_feeds_every_fetched_batch():
    VerlVASSampler(StandInRLHFDataset(["a", "b"]), {"train_batch_size": 1, "vas": {"state_name": "run"}})
    batch = _scored_batch([1, 1], [1.0, 1.0], [[3, 4], [3, 4]], [[1, 1], [1, 1]])

    class StandInTrainer:
        def _fetch_one_gen_batch(self):
            return batch

    trainer = vas_trainer_class(StandInTrainer, state_name="run")()
    assert trainer._fetch_one_gen_batch() is batch
    assert shared_state("run").table.scores["b"].pass_rate == 1.0
    assert type(trainer).__name__ == "VASStandInTrainer"


def test_state_save_load(tmp_path):
    VerlVASSampler(StandInRLHFDataset(["a"]), {"train_batch_size": 1, "vas": {"state_name": "run"}})
    state = shared_state("run")
    state.record_batch(_scored_batch([0, 0], [1.0, 0.0], [[1], [2]], [[1], [1]]))
    state.save(tmp_path)
    verl_adapter._STATES.clear()
    VerlVASSampler(StandInRLHFDataset(["a"]), {"train_batch_size": 1, "vas": {"state_name": "run"}})
    shared_state("run").load(tmp_path)
    assert shared_state("run").table.scores == state.table.scores


def test_overrides_and_rows_and_reward():
    overrides = verl_overrides(VerlRunConfig(train_files="/d/train.parquet", model_path="/m", num_generations=4))
    assert "algorithm.adv_estimator=grpo" in overrides
    assert "actor_rollout_ref.rollout.n=4" in overrides
    assert "trainer.v1.sampler.custom_sampler.name=VerlVASSampler" in overrides
    assert "+data.vas.vas_lambda=0.5" in overrides
    row = {"problem_id": "x", "source": "gsm8k", "answer": "18", "answer_type": "integer", "question_type": "free_form",
           "choices": None, "precision": None, "unit": None, "prompt": []}
    verl_row = to_verl_row(row, 7)
    assert verl_row["extra_info"]["index"] == 7 and verl_row["reward_model"]["ground_truth"] == "18"
    score = verl_compute_score("gsm8k", "<think>9*2</think> \\boxed{18}", "18", verl_row["extra_info"])
    assert score == {"score": 1.1, "acc": 1.0}
