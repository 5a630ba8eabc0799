"""Typed configs: VAS sampling (shared by the TRL trainer and the verl adapter) and one GRPO + VAS run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from pipeline.config_base import StrictConfig
from pipeline.train.rewards import ACCURACY, RewardConfig
from pipeline.train.vas import VPSConfig


@dataclass(frozen=True)
class VASConfig:
    vas_lambda: float = 0.5  # share of each batch drawn by VPS; 0 = TRL's uniform sampling exactly
    vps: VPSConfig = field(default_factory=VPSConfig)
    prompt_id_column: str = "problem_id"
    accuracy_reward: str = ACCURACY  # the reward function whose column is the correctness p is estimated from
    scoring_rollouts: int = 0  # > 0: score every prompt before training; 0: seed from `pass_rate`, else the prior
    seed_from_pass_rate: bool = True
    refresh_every_steps: int = 0  # > 0: re-score every prompt with the current policy that often
    snapshot_every_steps: int = 10  # how often the VPS of all prompts is recorded (transition plot); O(prompts) each


def common_trainer_args(device: str, save_steps: int) -> dict:
    """transformers Trainer arguments every run here shares (SFT and GRPO): device, logging, checkpoints."""
    on_cpu = device == "cpu"
    return dict(
        use_cpu=on_cpu,
        bf16=not on_cpu,
        logging_steps=1,
        save_strategy="steps" if save_steps > 0 else "no",
        save_steps=max(save_steps, 1),
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,  # workers prefetch batches: GRPO would draw them from staler VPS weights
    )


class TrainConfig(StrictConfig):
    rl_dataset_dir: Path
    output_dir: Path
    model_path: Path | None = None  # the base model; None: build a tiny one (VL when the set has images) under output_dir
    # Where GRPO starts: "sft" = the run's SFT output (`sft_model_dir`) when it holds a model, else the base model;
    # "base" = the base model; a path = that model folder.
    start_from: Literal["base", "sft"] | Path = "sft"
    sft_model_dir: Path | None = None
    max_steps: int = 2  # 0: validate the RL set only
    max_rows: int | None = None  # train on the first rows only (smoke runs)
    seed: int = 0
    num_generations: int = 4  # G, rollouts per prompt
    prompts_per_step: int = 2  # unique prompts per optimiser step (per device)
    max_completion_length: int = 32
    learning_rate: float = 1e-5
    lr_scheduler_type: str = "linear"  # transformers' names; "constant" for short benchmark runs
    temperature: float = 1.0
    beta: float = 0.0  # KL coefficient; 0 skips the reference model
    max_grad_norm: float = 1.0
    save_steps: int = 0  # > 0: checkpoint (weights + VPS state + sampler draws) that often
    resume: bool = False  # continue from the newest checkpoint in output_dir, if there is one
    # On CPU, TRL's vLLM mode fails at the first weight sync: generate with transformers there.
    use_vllm: bool = False
    device: Literal["cpu", "auto"] = "cpu"
    rewards: RewardConfig = RewardConfig()
    vas: VASConfig = Field(default_factory=VASConfig)

    @model_validator(mode="after")
    def _steps_non_negative(self) -> TrainConfig:
        if self.max_steps < 0:
            raise ValueError("max_steps must be >= 0")
        return self

    def grpo_args(self):
        """TRL's GRPOConfig for this run (imported here: TRL is heavy and validation-only runs skip it)."""
        from trl import GRPOConfig

        return GRPOConfig(
            output_dir=str(self.output_dir),
            max_steps=self.max_steps,
            seed=self.seed,
            per_device_train_batch_size=self.prompts_per_step * self.num_generations,
            num_generations=self.num_generations,
            max_completion_length=self.max_completion_length,
            learning_rate=self.learning_rate,
            lr_scheduler_type=self.lr_scheduler_type,
            temperature=self.temperature,
            beta=self.beta,
            max_grad_norm=self.max_grad_norm,
            reward_weights=[self.rewards.accuracy_weight, self.rewards.format_weight],
            use_vllm=self.use_vllm,
            **common_trainer_args(self.device, self.save_steps),
        )
