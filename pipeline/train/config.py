"""The typed config of one GRPO + VAS run, and its translation into TRL's GRPOConfig."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.train.rewards import RewardConfig
from pipeline.train.trl_trainer import VASConfig


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rl_dataset_dir: Path
    output_dir: Path
    model_path: Path | None = None  # None: build a tiny model (VL when the set has images) under output_dir
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
    save_steps: int = 0  # > 0: checkpoint (weights + VPS state) that often
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

        on_cpu = self.device == "cpu"
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
            use_cpu=on_cpu,
            bf16=not on_cpu,
            logging_steps=1,
            save_strategy="steps" if self.save_steps > 0 else "no",
            save_steps=max(self.save_steps, 1),
            report_to=[],
            disable_tqdm=True,
            dataloader_num_workers=0,  # workers prefetch batches, i.e. draw them from staler VPS weights
        )
