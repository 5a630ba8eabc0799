"""Typed configs: VAS sampling (shared by the TRL trainer and the verl adapter), its peers, what a run sets for SFT and
for GRPO + VAS (`TrainOptions`, checked with a curate run's config), one GRPO + VAS run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from pipeline.config_base import StrictConfig, runtime
from pipeline.evaluate.stage import EvaluateConfig
from pipeline.train.peers import DynamicSamplingConfig, GRESOConfig
from pipeline.train.rewards import ACCURACY, RewardConfig
from pipeline.train.vas import PosteriorConfig, VPSConfig

Scorer = Literal["posterior", "vps"]
StageName = Literal["sft", "grpo-vas", "evaluate"]  # the train chain's stages, in order
STAGES: tuple[StageName, ...] = ("sft", "grpo-vas", "evaluate")


@dataclass(frozen=True)
class VASConfig:
    """Default: the paper's VPS = a OVS + b TDS with the whole batch drawn by it (lambda = 1), the setting that met
    the goals on both task mixes in benchmarks/bench_vas.py; `VASConfig.paper()` is the paper's lambda = 0.5;
    `scorer="posterior"`: Beta posteriors with a staleness half-life, Thompson draws of distinct prompts."""

    vas_lambda: float = 1.0  # share of each batch drawn by the scores; 0 = TRL's uniform sampling exactly
    scorer: Scorer = "vps"
    posterior: PosteriorConfig = field(default_factory=PosteriorConfig)
    vps: VPSConfig = field(default_factory=VPSConfig)
    prompt_id_column: str = "problem_id"
    accuracy_reward: str = ACCURACY  # the reward function whose column is the correctness p is estimated from
    scoring_rollouts: int = 0  # > 0: score every prompt before training; 0: seed from `pass_rate`, else the prior
    seed_from_pass_rate: bool = True
    refresh_every_steps: int = 0  # > 0: re-score every prompt with the current policy that often
    snapshot_every_steps: int = 10  # how often the VPS of all prompts is recorded (transition plot); O(prompts) each

    @classmethod
    def paper(cls, vas_lambda: float = 0.5, **fields) -> VASConfig:
        return cls(vas_lambda=vas_lambda, scorer="vps", **fields)


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


class SFTSettings(StrictConfig):
    """What a run sets for cold-start SFT (`train.options.sft`); the chain adds the folders, base model and seed."""

    max_steps: int = 2  # the set is a stream: steps, not epochs, bound the run (it wraps around at the end)
    max_rows: int | None = None  # train on the first rows only (smoke runs, repeated-batch checks)
    batch_size: int = 2
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-5
    lr_scheduler_type: str = "cosine"
    warmup_steps: int = 0
    max_length: int | None = 2048  # tokens per example, prompt + completion (image tokens included)
    shuffle_buffer: int = 256  # seeded shuffle of the stream; 0 keeps the published order
    save_steps: int = runtime(0)  # > 0: checkpoint that often (exact resume with `resume`)
    resume: bool = runtime(False)  # continue from the newest checkpoint: the same model as an uninterrupted run
    device: Literal["cpu", "auto"] = "cpu"

    @model_validator(mode="after")
    def _positive(self) -> SFTSettings:
        if self.max_steps < 0 or self.batch_size < 1:
            raise ValueError("max_steps must be >= 0 and batch_size >= 1")
        return self


class GRPOSettings(StrictConfig):
    """What a run sets for GRPO + VAS (`train.options.grpo`); the chain adds the folders, base model and seed."""

    # Where GRPO starts: "sft" = the run's SFT output (`sft_model_dir`) when it holds a model, else the base model;
    # "base" = the base model; a path = that model folder.
    start_from: Literal["base", "sft"] | Path = "sft"
    max_steps: int = 2  # 0: validate the RL set only
    max_rows: int | None = None  # train on the first rows only (smoke runs)
    num_generations: int = 4  # G, rollouts per prompt
    prompts_per_step: int = 2  # unique prompts per optimiser step (per device)
    max_completion_length: int = 32
    learning_rate: float = 1e-5
    lr_scheduler_type: str = "linear"  # transformers' names; "constant" for short benchmark runs
    temperature: float = 1.0
    beta: float = 0.0  # KL coefficient; 0 skips the reference model
    max_grad_norm: float = 1.0
    save_steps: int = runtime(0)  # > 0: checkpoint (weights + VPS state + sampler draws) that often
    resume: bool = runtime(False)  # continue from the newest checkpoint in output_dir: the same run as uninterrupted
    # On CPU, TRL's vLLM mode fails at the first weight sync: generate with transformers there.
    use_vllm: bool = False
    device: Literal["cpu", "auto"] = "cpu"
    rewards: RewardConfig = RewardConfig()
    vas: VASConfig = Field(default_factory=VASConfig)
    # Peers of VAS, for comparisons (set vas.vas_lambda = 0 to run them alone): DAPO's dynamic sampling (drop
    # zero-variance groups after rollout, refill the batch) and GRESO's pre-rollout skipping (which needs it).
    dynamic_sampling: DynamicSamplingConfig | None = None
    pre_rollout_skip: GRESOConfig | None = None

    @model_validator(mode="after")
    def _steps_non_negative(self) -> GRPOSettings:
        if self.max_steps < 0:
            raise ValueError("max_steps must be >= 0")
        if self.pre_rollout_skip is not None and self.vas.vas_lambda > 0:
            raise ValueError("pre_rollout_skip replaces the prompt sampler: set vas.vas_lambda = 0")
        return self


class TrainOptions(StrictConfig):
    """Per-stage settings of the train chain: `train.options` of a curate run, `options` of the train flow."""

    sft: SFTSettings = SFTSettings()
    grpo: GRPOSettings = GRPOSettings()
    evaluate: EvaluateConfig = EvaluateConfig()  # `models` empty: the chain's checkpoints


class TrainConfig(GRPOSettings):
    rl_dataset_dir: Path
    output_dir: Path
    model_path: Path | None = None  # the base model; None: build a tiny one (VL when the set has images) under output_dir
    sft_model_dir: Path | None = None
    seed: int = 0

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
