"""TRL's GRPOTrainer with Variance-Aware Sampling, and its peers as options of the same trainer.

Two hooks: `_get_train_sampler` returns the VAS sampler (TRL's repeat contract kept), and `_calculate_rewards`,
after TRL has gathered every process's rewards, folds each prompt's group (accuracy rewards + unpadded completion
ids) into the score table (the paper's VPS table or the posterior one, `VASConfig.scorer`). The table is saved
with every checkpoint and restored on resume. Optionally all prompts are scored with `scoring_rollouts` rollouts
before training and every `refresh_every_steps` steps.

Peers (`pipeline.train.peers`): `dynamic_sampling` wraps `_generate_and_score_completions` in DAPO's loop (roll
out, drop zero-variance groups, refill from the sampler, keep the first full batch); `pre_rollout_skip` swaps in
GRESO's skipping sampler and adapts its probabilities after each step. Every rollout generated is counted
(`rollouts_generated`), and the time spent in each method's own code (`method_seconds`).
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
from datasets import Dataset
from transformers import PreTrainedModel, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from pipeline.train.config import VASConfig
from pipeline.train.peers import (
    DynamicSamplingConfig,
    GRESOConfig,
    GRESOState,
    concat_rollout_rows,
    dynamic_sampling_selection,
    is_informative,
)
from pipeline.train.sampler import SkipSampler, VASRepeatSampler
from pipeline.train.vas import VPS_STATE_FILE, PosteriorScoreTable, ScoreTable, VPSScoreTable, group_rollouts

VAS_HISTORY_FILE = "vas_history.json"
SAMPLER_DRAWS_FILE = "vas_sampler_draws.json"
SKIP_STATE_FILE = "greso_state.json"


@dataclass
class VASHistory:
    """What the plots need: per-generation zero-variance fractions and VPS snapshots by step."""

    zero_variance_fraction: list[tuple[int, float]] = field(default_factory=list)  # per rollout batch
    vps_snapshots: list[tuple[int, list[float | None]]] = field(default_factory=list)  # None: not scored yet
    vas_seconds: float = 0.0  # table updates (the sampler's draws are counted by the sampler)
    peer_seconds: float = 0.0  # dynamic sampling's selection and merge, GRESO's bookkeeping
    rollouts_generated: int = 0  # training rollouts, dynamic sampling's dropped ones included
    groups_generated: int = 0
    zero_variance_groups: int = 0

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> VASHistory:
        values = json.loads(path.read_text(encoding="utf-8"))
        values["zero_variance_fraction"] = [tuple(x) for x in values["zero_variance_fraction"]]
        values["vps_snapshots"] = [tuple(x) for x in values["vps_snapshots"]]
        return cls(**values)


def with_image_lists(rows: list[dict]) -> list[dict]:
    """Rows as TRL reads a VL batch: a row without images holds `images: []`. The published set stores null there,
    and TRL takes a batch for text-only only when every row's list is empty (then no processor sees images)."""
    if not rows or "images" not in rows[0]:
        return rows
    return [row if row["images"] is not None else {**row, "images": []} for row in rows]


def processor_image_lists(images: list | None) -> list | None:
    """TRL's per-prompt image lists as its generation returns them (None for a prompt without images, what its vLLM
    path wants) -> what a transformers processor takes for a mixed batch: [] for a prompt without images (it
    rejects None). TRL 1.16 hands the former to the processor for the training forward pass."""
    return None if images is None else [prompt_images or [] for prompt_images in images]


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


def _resolved(value: int | None, name: str) -> int:
    """A GRPOConfig size that its __post_init__ always fills in (typed optional because a user may leave it unset)."""
    if value is None:
        raise ValueError(f"GRPOConfig.{name} is unset")
    return value


class VASGRPOTrainer(GRPOTrainer):
    # What GRPOTrainer's __init__ sets, as this trainer always has it (TRL types them as the base Trainer's optionals).
    args: GRPOConfig
    model: PreTrainedModel
    train_dataset: Dataset
    num_generations: int
    num_generations_eval: int

    def __init__(
        self,
        *args: Any,
        vas: VASConfig = VASConfig(),
        dynamic_sampling: DynamicSamplingConfig | None = None,
        pre_rollout_skip: GRESOConfig | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.vas, self.dynamic_sampling = vas, dynamic_sampling
        if vas.accuracy_reward not in self.reward_func_names:
            raise ValueError(f"VAS needs the {vas.accuracy_reward!r} reward; have {self.reward_func_names}")
        if dynamic_sampling is not None and self.accelerator.num_processes > 1:
            raise ValueError("dynamic sampling here runs on one process (verl's algorithm.filter_groups scales out)")
        self._accuracy_column = self.reward_func_names.index(vas.accuracy_reward)
        self.score_table = self._new_score_table()
        self.skip_state = GRESOState(pre_rollout_skip) if pre_rollout_skip is not None else None
        self.prompt_ids: list[str] = [str(x) for x in self.train_dataset[vas.prompt_id_column]]
        columns = self.train_dataset.column_names
        if vas.seed_from_pass_rate and vas.scoring_rollouts == 0 and {"num_correct", "num_rollouts"} <= set(columns):
            for prompt_id, right, rollouts in zip(self.prompt_ids, self.train_dataset["num_correct"], self.train_dataset["num_rollouts"]):
                self.score_table.seed_counts(prompt_id, right or 0, rollouts or 0)
        elif vas.seed_from_pass_rate and vas.scoring_rollouts == 0 and "pass_rate" in columns:  # a set published without counts
            for prompt_id, pass_rate in zip(self.prompt_ids, self.train_dataset["pass_rate"]):
                self.score_table.seed_pass_rate(prompt_id, pass_rate)
        self.vas_history = VASHistory()
        self._vas_sampler: VASRepeatSampler | None = None
        self._scoring = False
        self._step_groups: list[list[float]] = []  # every group rolled out for the current step
        self._last_informative: list[bool] = []  # per group of the last rollout batch
        self.add_callback(_ScoringCallback(self))

    @property
    def _generation_batch_size(self) -> int:
        return _resolved(self.args.generation_batch_size, "generation_batch_size")

    def _new_score_table(self) -> ScoreTable:
        if self.vas.scorer == "posterior":
            return PosteriorScoreTable(self.vas.posterior, group_size=self.num_generations)
        return VPSScoreTable(self.vas.vps)

    def vps_weights(self) -> np.ndarray:
        return self.score_table.weights(self.prompt_ids)

    def _thompson_draw(self, count: int, seed: int) -> list[int]:
        if not isinstance(self.score_table, PosteriorScoreTable):
            raise TypeError(f"Thompson draws need vas.scorer='posterior', not {self.vas.scorer!r}")
        return self.score_table.draw(self.prompt_ids, count, seed)

    def _get_train_sampler(self, dataset=None) -> VASRepeatSampler:
        dataset = self.train_dataset if dataset is None else dataset
        shape = dict(
            data_source=dataset,
            mini_repeat_count=self.num_generations,
            batch_size=self._generation_batch_size // self.num_generations,
            repeat_count=self.num_iterations * _resolved(self.args.steps_per_generation, "steps_per_generation"),
            shuffle=self.shuffle_dataset,
            seed=self.args.seed,
        )
        if (skip_state := self.skip_state) is not None:
            self._vas_sampler = SkipSampler(**shape, skip_fn=lambda: skip_state.skip_probabilities(self.prompt_ids))
        else:
            self._vas_sampler = VASRepeatSampler(
                **shape,
                vas_lambda=self.vas.vas_lambda,
                weights_fn=self.vps_weights,
                draw_fn=self._thompson_draw if isinstance(self.score_table, PosteriorScoreTable) else None,
            )
        return self._vas_sampler

    def _rollout(self, inputs):
        """TRL's generation and scoring of one batch of rows (any mix of rows with and without images)."""
        return super()._generate_and_score_completions(with_image_lists(inputs))

    def _generate(self, prompts):
        *outputs, images, tool_images = super()._generate(prompts)
        return (*outputs, processor_image_lists(images), tool_images)

    def _generate_and_score_completions(self, inputs):
        if not self.model.training or self._scoring:
            return self._rollout(inputs)
        self._step_groups = []
        if self.dynamic_sampling is None:
            output = self._rollout(inputs)
        else:
            output = self._dynamically_sampled(inputs)
        started = time.perf_counter()
        self.score_table.end_batch()
        if self.skip_state is not None and (self.state.epoch or 0) >= 1:  # GRESO adapts from the second epoch on
            self.skip_state.adapt(self._step_groups)
        self.vas_history.peer_seconds += time.perf_counter() - started
        return output

    def _dynamically_sampled(self, inputs):
        """DAPO: roll out, keep the informative groups, refill from the sampler until the batch is full."""
        group, batch = self.num_generations, len(inputs) // self.num_generations
        outputs, rounds = [], []
        candidates = inputs
        for round_number in range(self.dynamic_sampling.max_rounds):
            outputs.append(self._rollout(candidates))
            rounds.append(self._last_informative)
            if sum(sum(flags) for flags in rounds) >= batch:
                break
            # A full batch of new prompts per round, as verl's filter_groups draws the next generation batch.
            refill = self._vas_sampler.refill(batch, key=(self.state.global_step, round_number))
            candidates = [self.train_dataset[index] for index in refill for _ in range(group)]
        started = time.perf_counter()
        chosen = dynamic_sampling_selection(rounds, batch)
        rows = [(r, g * group + k) for r, g in chosen for k in range(group)]
        merged = concat_rollout_rows(outputs, rows, self._tokenizer.pad_token_id)
        self.vas_history.peer_seconds += time.perf_counter() - started
        return merged

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
        if self._scoring:
            return
        step = self.state.global_step
        if step % max(1, self.vas.snapshot_every_steps) == 0:
            vps = self.score_table.vps(self.prompt_ids)  # NaN = unscored, so plots skip prompts still at the prior
            self.vas_history.vps_snapshots.append((step, [None if np.isnan(v) else v for v in vps.tolist()]))
        vps_mean = float(self.vps_weights().mean())
        elapsed = time.perf_counter() - started  # all of VAS's bookkeeping, its logs included
        self.vas_history.vas_seconds += elapsed
        started = time.perf_counter()
        self._last_informative = [is_informative(rewards) for _, rewards, _ in groups]
        self._step_groups += [rewards for _, rewards, _ in groups]
        if self.skip_state is not None:
            for prompt_id, rewards, _ in groups:
                self.skip_state.observe(prompt_id, rewards)
        self.vas_history.peer_seconds += time.perf_counter() - started
        self.vas_history.rollouts_generated += len(accuracy)
        self.vas_history.groups_generated += len(groups)
        self.vas_history.zero_variance_groups += self._last_informative.count(False)
        fraction = zero_variance_fraction([rewards for _, rewards, _ in groups])
        self.vas_history.zero_variance_fraction.append((step, fraction))
        metrics = self._metrics["train"]
        metrics["vas/frac_accuracy_zero_variance"].append(fraction)
        metrics["vas/vps_mean"].append(vps_mean)
        metrics["vas/scored_prompts"].append(float(len(self.score_table)))
        metrics["vas/update_seconds"].append(elapsed)

    def score_all_prompts(self) -> None:
        """Roll out every prompt `scoring_rollouts` times with the current policy; the hook updates the table."""
        rollouts, batch_prompts = self.vas.scoring_rollouts, max(1, self._generation_batch_size // self.num_generations)
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
            close = getattr(reward_func, "close", None)
            if close is not None:
                close()

    def vas_seconds(self) -> float:
        """Everything VAS added: table updates plus weighted draws."""
        sampler_seconds = self._vas_sampler.seconds_in_weighted_draws if self._vas_sampler else 0.0
        return self.vas_history.vas_seconds + sampler_seconds

    def method_seconds(self) -> float:
        """The sampling method's own time: VAS's when it draws (lambda > 0), plus the peers' (skip draws, DAPO)."""
        uses_scores = self.vas.vas_lambda > 0 and self.skip_state is None
        sampler_seconds = self._vas_sampler.seconds_in_weighted_draws if self._vas_sampler else 0.0
        return (self.vas_history.vas_seconds if uses_scores else 0.0) + sampler_seconds + self.vas_history.peer_seconds

    def save_vas_state(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.score_table.save(directory / VPS_STATE_FILE)
        self.vas_history.save(directory / VAS_HISTORY_FILE)
        if self.skip_state is not None:
            (directory / SKIP_STATE_FILE).write_text(json.dumps(self.skip_state.state_dict()), encoding="utf-8")
        if self._vas_sampler is not None:
            (directory / SAMPLER_DRAWS_FILE).write_text(json.dumps(self._vas_sampler.draw_log()), encoding="utf-8")

    def load_vas_state(self, directory: str | Path) -> None:
        directory = Path(directory)
        if (directory / VPS_STATE_FILE).exists():
            self.score_table = self._new_score_table()
            self.score_table.load_state_dict(json.loads((directory / VPS_STATE_FILE).read_text(encoding="utf-8")))
        if self.skip_state is not None and (directory / SKIP_STATE_FILE).exists():
            self.skip_state.load_state_dict(json.loads((directory / SKIP_STATE_FILE).read_text(encoding="utf-8")))
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
