"""TRL's GRPOTrainer with Variance-Aware Sampling.

Two hooks: `_get_train_sampler` returns the VAS sampler (TRL's repeat contract kept), and `_calculate_rewards`,
after TRL has gathered every process's rewards, folds each prompt's group (accuracy rewards + unpadded completion
ids) into the VPS score table. The table is saved with every checkpoint and restored on resume. Optionally all
prompts are scored with `scoring_rollouts` rollouts before training and every `refresh_every_steps` steps.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import gather_object
from transformers import TrainerCallback
from trl import GRPOTrainer

from pipeline.train.config import VASConfig
from pipeline.train.sampler import VASRepeatSampler
from pipeline.train.vas import VPS_STATE_FILE, VPSScoreTable, group_rollouts

VAS_HISTORY_FILE = "vas_history.json"
SAMPLER_DRAWS_FILE = "vas_sampler_draws.json"


@dataclass
class VASHistory:
    """What the plots need: per-generation zero-variance fractions and VPS snapshots by step."""

    zero_variance_fraction: list[tuple[int, float]] = field(default_factory=list)
    vps_snapshots: list[tuple[int, list[float | None]]] = field(default_factory=list)  # None: not scored yet
    vas_seconds: float = 0.0  # table updates + weighted draws: VAS's whole overhead

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> VASHistory:
        values = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            [tuple(x) for x in values["zero_variance_fraction"]],
            [tuple(x) for x in values["vps_snapshots"]],
            values["vas_seconds"],
        )


def zero_variance_fraction(groups: list[list[float]]) -> float:
    """Share of rollout groups whose rewards are all equal (GRPO's advantage is 0 for every rollout in them)."""
    return float(np.mean([max(g) - min(g) <= 1e-9 for g in groups])) if groups else math.nan


class _ScoringCallback(TrainerCallback):
    """Scores every prompt before the first step and every `refresh_every_steps` steps after it."""

    def __init__(self, trainer: VASGRPOTrainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        if self.trainer.vas.scoring_rollouts > 0 and state.global_step == 0:
            self.trainer.score_all_prompts()

    def on_step_end(self, args, state, control, **kwargs):
        every = self.trainer.vas.refresh_every_steps
        if every > 0 and state.global_step % every == 0 and self.trainer.vas.scoring_rollouts > 0:
            self.trainer.score_all_prompts()


class VASGRPOTrainer(GRPOTrainer):
    def __init__(self, *args: Any, vas: VASConfig = VASConfig(), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.vas = vas
        if vas.accuracy_reward not in self.reward_func_names:
            raise ValueError(f"VAS needs the {vas.accuracy_reward!r} reward; have {self.reward_func_names}")
        self._accuracy_column = self.reward_func_names.index(vas.accuracy_reward)
        self.score_table = VPSScoreTable(vas.vps)
        self.prompt_ids: list[str] = [str(x) for x in self.train_dataset[vas.prompt_id_column]]
        if vas.seed_from_pass_rate and vas.scoring_rollouts == 0 and "pass_rate" in self.train_dataset.column_names:
            for prompt_id, pass_rate in zip(self.prompt_ids, self.train_dataset["pass_rate"]):
                self.score_table.seed_pass_rate(prompt_id, pass_rate)
        self.vas_history = VASHistory()
        self._vas_sampler: VASRepeatSampler | None = None
        self._scoring = False
        self.add_callback(_ScoringCallback(self))

    def vps_weights(self) -> np.ndarray:
        return self.score_table.weights(self.prompt_ids)

    def _get_train_sampler(self, dataset=None) -> VASRepeatSampler:
        dataset = self.train_dataset if dataset is None else dataset
        self._vas_sampler = VASRepeatSampler(
            data_source=dataset,
            mini_repeat_count=self.num_generations,
            batch_size=self.args.generation_batch_size // self.num_generations,
            repeat_count=self.num_iterations * self.args.steps_per_generation,
            shuffle=self.shuffle_dataset,
            seed=self.args.seed,
            vas_lambda=self.vas.vas_lambda,
            weights_fn=self.vps_weights,
        )
        return self._vas_sampler

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.model.training or self._scoring:
            self._record_rollouts(inputs, rewards_per_func, completion_ids_list)
        return rewards_per_func

    def _record_rollouts(self, inputs, rewards_per_func: torch.Tensor, completion_ids_list) -> None:
        started = time.perf_counter()
        # Rewards are already gathered across processes; gather ids in the same (process-major) order.
        prompt_ids = gather_object([str(row[self.vas.prompt_id_column]) for row in inputs])
        completion_ids = gather_object([list(ids) for ids in completion_ids_list])
        accuracy = rewards_per_func[:, self._accuracy_column].nan_to_num(0.0).tolist()
        group_size = self.num_generations if self.model.training else self.num_generations_eval
        groups = list(group_rollouts(prompt_ids, accuracy, completion_ids, group_size))
        for prompt_id, rewards, ids in groups:
            self.score_table.update(prompt_id, rewards, ids)
        elapsed = time.perf_counter() - started
        if self._scoring:
            return
        step = self.state.global_step
        fraction = zero_variance_fraction([rewards for _, rewards, _ in groups])
        self.vas_history.zero_variance_fraction.append((step, fraction))
        self.vas_history.vas_seconds += elapsed
        if step % max(1, self.vas.snapshot_every_steps) == 0:
            vps = self.score_table.vps(self.prompt_ids)  # NaN = unscored, so plots skip prompts still at the prior
            self.vas_history.vps_snapshots.append((step, [None if np.isnan(v) else v for v in vps.tolist()]))
        metrics = self._metrics["train"]
        metrics["vas/frac_accuracy_zero_variance"].append(fraction)
        metrics["vas/vps_mean"].append(float(self.vps_weights().mean()))
        metrics["vas/scored_prompts"].append(float(len(self.score_table)))
        metrics["vas/update_seconds"].append(elapsed)

    def score_all_prompts(self) -> None:
        """Roll out every prompt `scoring_rollouts` times with the current policy; the hook updates the table."""
        rollouts, batch_prompts = self.vas.scoring_rollouts, max(1, self.args.generation_batch_size // self.num_generations)
        saved_eval_generations, self.num_generations_eval = self.num_generations_eval, rollouts
        was_training, self._scoring = self.model.training, True
        self.model.eval()
        try:
            for start in range(0, len(self.train_dataset), batch_prompts):
                rows = [self.train_dataset[i] for i in range(start, min(start + batch_prompts, len(self.train_dataset)))]
                self._generate_and_score_completions([row for row in rows for _ in range(rollouts)])
        finally:
            self.num_generations_eval, self._scoring = saved_eval_generations, False
            self._metrics["eval"].clear()  # scoring rollouts are not an evaluation
            self.model.train(was_training)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.model.training and self._vas_sampler is not None:
            logs["vas/sampler_seconds_total"] = self._vas_sampler.seconds_in_weighted_draws
        super().log(logs, start_time)

    def close_rewards(self) -> None:
        """Stop reward functions that hold worker processes (the verifier's math-verify pool)."""
        for reward_func in self.reward_funcs:
            if hasattr(reward_func, "close"):
                reward_func.close()

    def vas_seconds(self) -> float:
        """Everything VAS added: table updates plus weighted draws."""
        sampler_seconds = self._vas_sampler.seconds_in_weighted_draws if self._vas_sampler else 0.0
        return self.vas_history.vas_seconds + sampler_seconds

    def save_vas_state(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.score_table.save(directory / VPS_STATE_FILE)
        self.vas_history.save(directory / VAS_HISTORY_FILE)
        if self._vas_sampler is not None:
            (directory / SAMPLER_DRAWS_FILE).write_text(json.dumps(self._vas_sampler.draw_log()), encoding="utf-8")

    def load_vas_state(self, directory: str | Path) -> None:
        directory = Path(directory)
        if (directory / VPS_STATE_FILE).exists():
            self.score_table = VPSScoreTable.load(directory / VPS_STATE_FILE, self.vas.vps)
        if (directory / VAS_HISTORY_FILE).exists():
            self.vas_history = VASHistory.load(directory / VAS_HISTORY_FILE)
        # Trainer skips the trained batches by iterating the sampler again: the logged draws make it hand out the
        # very prompts the interrupted run drew, including the batch it had fetched ahead before the checkpoint.
        if self._vas_sampler is not None and (directory / SAMPLER_DRAWS_FILE).exists():
            self._vas_sampler.load_draw_log(json.loads((directory / SAMPLER_DRAWS_FILE).read_text(encoding="utf-8")))

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            checkpoint = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            self.save_vas_state(checkpoint)

    def _load_optimizer_and_scheduler(self, checkpoint):
        # TRL restores its own extra state here too: called exactly when resuming from `checkpoint`.
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self.load_vas_state(checkpoint)
