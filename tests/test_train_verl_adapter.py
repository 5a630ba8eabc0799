"""The verl adapter's sampler without verl (the rest runs against the real verl in test_train_verl_real.py)."""

from __future__ import annotations

from pipeline.train.verl_adapter import VerlVASSampler


class StandInRLHFDataset:
    """verl's RLHFDataset as the sampler reads it: sized, with the rows as `.dataframe` (a HF dataset there)."""

    def __init__(self, prompt_ids: list[str], indices: list[int]):
        self.dataframe = {"problem_id": prompt_ids, "extra_info": [{"index": index} for index in indices]}

    def __len__(self) -> int:
        return len(self.dataframe["problem_id"])


def test_sampler_yields_whole_batches_of_unrepeated_rows_and_maps_indices_to_prompts():
    data = StandInRLHFDataset([f"p{i}" for i in range(10)], indices=[20 + i for i in range(10)])
    sampler = VerlVASSampler(data, {"train_batch_size": 4, "seed": 3, "vas": {"vas_lambda": 0.0}})
    indices = list(sampler)
    assert len(indices) == len(sampler) == 8  # 2 full batches of 4; verl repeats rollout.n itself
    assert len(set(indices)) == 8 and set(indices) <= set(range(10))  # dataset rows, not extra_info indices
    assert sampler.state.prompt_of_index[27] == "p7"
    sampler.state.record([27, 27], [1.0, 0.0], [[1, 2], [1, 3]])
    resumed = VerlVASSampler(data, {"train_batch_size": 4, "vas": {"vas_lambda": 0.0}})
    resumed.load_state_dict(sampler.state_dict())
    assert resumed.state.table.scores == sampler.state.table.scores
    assert resumed.state.table.scores["p7"].pass_rate == 0.5
