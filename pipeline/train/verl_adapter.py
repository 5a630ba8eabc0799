"""VAS for verl (multi-node GRPO on Ray): the same score table and sampler behind verl 0.9's extension points.

verl is an optional extra and is never imported here at module level, so this file imports and unit-tests
without it. The pieces:
  * `VerlVASSampler`  the prompt sampler verl instantiates from config as `(data_source, data_config)`
                      (0.9: `trainer.v1.sampler.custom_sampler.{path,name}`). It yields dataset indices without
                      repeats (verl repeats `rollout.n` itself) and reads VPS weights from the shared state.
  * `vas_trainer_class(base)`  a subclass of verl's trainer whose `_fetch_one_gen_batch` feeds every scored
                      batch it hands out into the score table (register it with verl's `@register_trainer`).
  * `VerlVASState`    the table, the dataset-index -> prompt-id map and the DataProto reader. Prompts are tracked
                      by the dataset `index` field: verl regenerates `uid` on every fetch.
  * `verl_overrides`  the Hydra overrides for a GRPO + VAS run, and `verl_compute_score` the reward function.
Both sampler and trainer live in verl's driver process, so they share one `VerlVASState` by name.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from pipeline.train.sampler import VASRepeatSampler
from pipeline.train.config import VASConfig
from pipeline.train.vas import VPS_STATE_FILE, VPSScoreTable

INDEX_KEY = "index"  # verl's RLHFDataset copies extra_info["index"] into every rollout's non_tensor_batch
ACCURACY_KEY = "acc"  # what `verl_compute_score` returns beside "score"; verl keeps it in non_tensor_batch


class VerlVASState:
    """Score table plus how to read rollouts out of a verl DataProto (`.batch` tensors, `.non_tensor_batch` arrays)."""

    def __init__(self, prompt_ids: Sequence[str], config: VASConfig = VASConfig()):
        self.config = config
        self.prompt_ids = [str(prompt_id) for prompt_id in prompt_ids]
        self.table = VPSScoreTable(config.vps)

    def weights(self) -> np.ndarray:
        return self.table.weights(self.prompt_ids)

    def record_batch(self, batch: Any) -> int:
        """Fold a scored rollout batch into the table; returns the number of prompt groups seen."""
        indices = np.asarray(batch.non_tensor_batch[INDEX_KEY]).astype(int)
        accuracy = self._accuracy(batch)
        responses, mask = batch.batch["responses"], batch.batch["response_mask"]
        groups: dict[int, tuple[list[float], list[list[int]]]] = defaultdict(lambda: ([], []))
        for row, index in enumerate(indices):
            rewards, completions = groups[index]
            rewards.append(float(accuracy[row]))
            completions.append(responses[row][mask[row].bool()].tolist())  # unpadded completion ids
        for index, (rewards, completions) in groups.items():
            self.table.update(self.prompt_ids[index], rewards, completions)
        return len(groups)

    @staticmethod
    def _accuracy(batch: Any) -> np.ndarray:
        if ACCURACY_KEY in batch.non_tensor_batch:
            return np.asarray(batch.non_tensor_batch[ACCURACY_KEY], dtype=np.float64)
        # No accuracy column: the summed token-level score (binary outcome rewards sit on the last token).
        return batch.batch["token_level_scores"].sum(dim=-1).clamp(0, 1).double().numpy()

    def save(self, directory: str | Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.table.save(Path(directory) / VPS_STATE_FILE)

    def load(self, directory: str | Path) -> None:
        path = Path(directory) / VPS_STATE_FILE
        if path.exists():
            self.table = VPSScoreTable.load(path, self.config.vps)


_STATES: dict[str, VerlVASState] = {}


def shared_state(name: str, prompt_ids: Sequence[str] | None = None, config: VASConfig = VASConfig()) -> VerlVASState:
    """The driver-wide state for `name`; the first caller (the sampler, built with the dataset) creates it."""
    if name not in _STATES:
        if prompt_ids is None:
            raise KeyError(f"no VAS state {name!r} yet: the sampler creates it from the dataset")
        _STATES[name] = VerlVASState(prompt_ids, config)
    return _STATES[name]


def _prompt_ids(data_source: Any, column: str) -> list[str]:
    frame = getattr(data_source, "dataframe", data_source)  # verl's RLHFDataset keeps the HF dataset there
    return [str(value) for value in frame[column]]


class VerlVASSampler(Sampler[int]):
    """verl's `(data_source, data_config)` sampler; `data_config.vas` holds VASConfig fields plus `state_name`."""

    def __init__(self, data_source: Any, data_config: Mapping):
        vas_fields = dict(data_config.get("vas", {}) or {})
        state_name = vas_fields.pop("state_name", "default")
        config = VASConfig(**vas_fields)
        self.state = shared_state(state_name, _prompt_ids(data_source, config.prompt_id_column), config)
        self._sampler = VASRepeatSampler(
            data_source,
            mini_repeat_count=1,  # verl repeats each prompt rollout.n times after sampling
            batch_size=int(data_config.get("train_batch_size", 1)),
            seed=int(data_config.get("seed", 0) or 0),
            vas_lambda=config.vas_lambda,
            weights_fn=self.state.weights,
        )

    def __iter__(self):
        return iter(self._sampler)

    def __len__(self) -> int:
        return len(self._sampler)

    def update(self, batch: Any) -> None:
        """verl's curriculum-sampler hook (called with each scored batch by trainers that support it)."""
        self.state.record_batch(batch)

    def state_dict(self) -> dict:  # StatefulDataLoader checkpoints samplers through these
        return self._sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._sampler.load_state_dict(state)


def vas_trainer_class(base: type, state_name: str = "default") -> type:
    """A subclass of verl's trainer `base` that feeds each batch `_fetch_one_gen_batch` returns into the table.

    Usage (in verl's process): `register_trainer("grpo_vas")(vas_trainer_class(RayPPOTrainer))`.
    """

    class VASTrainer(base):
        def _fetch_one_gen_batch(self, *args, **kwargs):
            batch = super()._fetch_one_gen_batch(*args, **kwargs)
            if batch is not None and INDEX_KEY in batch.non_tensor_batch and "responses" in batch.batch.keys():
                shared_state(state_name).record_batch(batch)
            return batch

    VASTrainer.__name__ = VASTrainer.__qualname__ = f"VAS{base.__name__}"
    return VASTrainer


def register_vas_trainer(name: str = "grpo_vas", state_name: str = "default") -> type:  # pragma: no cover - needs verl
    """Register the VAS trainer with an installed verl (imported lazily: verl is an optional extra).

    The two import paths follow verl 0.9's layout as noted in environment.md; check them on the GPU machine.
    """
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer
    from verl.trainer.registry import register_trainer

    return register_trainer(name)(vas_trainer_class(RayPPOTrainer, state_name))


def verl_compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None) -> dict:
    """verl's `custom_reward_function`: the same verifier and format check as the TRL rewards."""
    from pipeline.train.rewards import AccuracyReward, RewardConfig, format_reward

    info = extra_info or {}
    accuracy = AccuracyReward.shared()(
        [solution_str],
        answer=[ground_truth],
        answer_type=[info.get("answer_type")],
        question_type=[info.get("question_type")],
        choices=[info.get("choices")],
        precision=[info.get("precision")],
        unit=[info.get("unit")],
    )[0]
    weights = RewardConfig()
    score = weights.accuracy_weight * accuracy + weights.format_weight * format_reward([solution_str])[0]
    return {"score": score, ACCURACY_KEY: accuracy}


@dataclass(frozen=True)
class VerlRunConfig:
    train_files: str  # parquet with verl's columns (see `to_verl_rows`)
    model_path: str
    total_training_steps: int = 100
    prompts_per_step: int = 64
    num_generations: int = 8
    max_prompt_length: int = 1024
    max_response_length: int = 1024
    n_gpus_per_node: int = 8
    nnodes: int = 1
    vas: Mapping[str, Any] = field(default_factory=lambda: {"vas_lambda": 0.5})


def verl_overrides(config: VerlRunConfig) -> list[str]:
    """Hydra overrides for `python -m verl.trainer.main_ppo` running GRPO with the VAS sampler and reward."""
    module = Path(__file__).resolve()
    overrides = {
        "algorithm.adv_estimator": "grpo",
        "data.train_files": config.train_files,
        "data.prompt_key": "prompt",
        "data.image_key": "images",
        "data.train_batch_size": config.prompts_per_step,
        "data.max_prompt_length": config.max_prompt_length,
        "data.max_response_length": config.max_response_length,
        "data.dataloader_num_workers": 0,  # workers would prefetch with stale VPS weights
        "actor_rollout_ref.model.path": config.model_path,
        "actor_rollout_ref.rollout.n": config.num_generations,
        "trainer.total_training_steps": config.total_training_steps,
        "trainer.n_gpus_per_node": config.n_gpus_per_node,
        "trainer.nnodes": config.nnodes,
        "trainer.v1.sampler.custom_sampler.path": str(module),
        "trainer.v1.sampler.custom_sampler.name": VerlVASSampler.__name__,
        "custom_reward_function.path": str(module),
        "custom_reward_function.name": verl_compute_score.__name__,
    }
    rendered = [f"{key}={value}" for key, value in overrides.items()]
    rendered += [f"+data.vas.{key}={value}" for key, value in config.vas.items()]
    return rendered


def to_verl_row(row: Mapping[str, Any], index: int) -> dict[str, Any]:
    """One RL-set row with the columns verl's RLHFDataset and reward manager read (`index` tracks the prompt)."""
    return {
        **row,
        "data_source": row["source"],
        "reward_model": {"style": "rule", "ground_truth": row["answer"]},
        "extra_info": {
            INDEX_KEY: index,
            **{key: row[key] for key in ("problem_id", "answer_type", "question_type", "choices", "precision", "unit")},
        },
    }


__all__ = [
    "VerlRunConfig",
    "VerlVASSampler",
    "VerlVASState",
    "register_vas_trainer",
    "shared_state",
    "to_verl_row",
    "vas_trainer_class",
    "verl_compute_score",
    "verl_overrides",
]
