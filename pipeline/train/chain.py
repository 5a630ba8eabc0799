"""The training chain: cold-start SFT -> GRPO + VAS from the SFT model -> evaluation of base, SFT and GRPO.

One typed config for the three stages; each stage can be left out, and each is resumable: SFT and GRPO continue
from their newest checkpoint, evaluation skips shards that have a marker, and a stage whose output records the
same config is not rerun at all. Folders under `output_dir`: `base/` (a tiny model, when none is given), `sft/`,
`grpo-vas/` (its trained policy in `grpo-vas/model/`), `evaluate/` (shards) and `evaluate/reports/<benchmark>/`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from pipeline.config_base import StrictConfig, validate_config
from pipeline.evaluate.stage import EvalModel, EvaluateConfig
from pipeline.io import stable_hash
from pipeline.train.config import TrainConfig
from pipeline.train.run import TRAINED_MODEL_DIR, ensure_model
from pipeline.train.sft import SFTStageConfig, set_has_images

StageName = Literal["sft", "grpo-vas", "evaluate"]
STAGES: tuple[StageName, ...] = ("sft", "grpo-vas", "evaluate")
DONE_FILE = "stage_done.json"


class TrainChainConfig(StrictConfig):
    output_dir: Path
    cold_start_dir: Path | None = None  # None: no SFT (GRPO starts from the base model)
    rl_dataset_dir: Path | None = None  # None: no GRPO
    stages: list[StageName] = Field(default_factory=lambda: list(STAGES))
    model_path: Path | None = None  # the base model; None: a tiny one (VL when a set has images)
    seed: int = 0
    sft: dict[str, Any] = Field(default_factory=dict)  # SFTStageConfig fields
    grpo: dict[str, Any] = Field(default_factory=dict)  # TrainConfig fields (start_from: base / sft / a path)
    evaluate: dict[str, Any] = Field(default_factory=dict)  # EvaluateConfig fields; models default to the chain's


def sft_config(chain: TrainChainConfig, base: Path | None) -> SFTStageConfig:
    fields = dict(cold_start_dir=chain.cold_start_dir, output_dir=chain.output_dir / "sft", model_path=base, seed=chain.seed)
    return validate_config(SFTStageConfig, {**fields, "resume": True, **chain.sft})


def grpo_config(chain: TrainChainConfig, base: Path | None) -> TrainConfig:
    fields = dict(rl_dataset_dir=chain.rl_dataset_dir, output_dir=chain.output_dir / "grpo-vas", model_path=base)
    fields |= dict(sft_model_dir=chain.output_dir / "sft", seed=chain.seed)
    return validate_config(TrainConfig, {**fields, "resume": True, **chain.grpo})


def has_model(path: Path | None) -> bool:
    return path is not None and (Path(path) / "config.json").exists()


def chain_models(chain: TrainChainConfig, base: Path | None) -> list[EvalModel]:
    """The checkpoints to compare, in training order: base, SFT, GRPO + VAS (those that exist); none when the chain
    has neither trained a model nor been given one."""
    trained = [("sft", chain.output_dir / "sft"), ("grpo-vas", chain.output_dir / "grpo-vas" / TRAINED_MODEL_DIR)]
    trained = [(name, path) for name, path in trained if has_model(path)]
    if not trained and chain.model_path is None:
        return []
    return [EvalModel(name=name, path=str(path)) for name, path in [("base", base), *trained] if has_model(path)]


def evaluate_config(chain: TrainChainConfig, base: Path | None) -> EvaluateConfig:
    values = dict(chain.evaluate)
    values.setdefault("models", [model.model_dump() for model in chain_models(chain, base)])
    return validate_config(EvaluateConfig, values)


def stage_is_done(folder: Path, config: StrictConfig) -> bool:
    """Whether `folder` holds the finished output of exactly this config (then the stage is skipped)."""
    marker = Path(folder) / DONE_FILE
    return marker.exists() and json.loads(marker.read_text(encoding="utf-8"))["config_hash"] == _hash(config)


def mark_stage_done(folder: Path, config: StrictConfig, result: dict) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    document = {"config_hash": _hash(config), "result": result}
    (Path(folder) / DONE_FILE).write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")


def done_result(folder: Path) -> dict:
    return json.loads((Path(folder) / DONE_FILE).read_text(encoding="utf-8"))["result"]


def _hash(config: StrictConfig) -> str:
    # resume only says how to get there, not what is computed
    return stable_hash({k: v for k, v in config.identity().items() if k != "resume"})


def base_model(chain: TrainChainConfig) -> Path | None:
    """The configured base model, else one tiny model for the whole chain (VL when either set has images), so
    SFT, GRPO and the evaluation share one tokenizer. None when nothing trains (validation-only runs)."""
    if chain.model_path is not None:
        return chain.model_path
    training = [
        folder
        for stage, folder, config in (("sft", chain.cold_start_dir, sft_config), ("grpo-vas", chain.rl_dataset_dir, grpo_config))
        if stage in chain.stages and folder is not None and config(chain, None).max_steps > 0
    ]
    if not training:
        return None

    vision = any(set_has_images(folder) for folder in training)
    existing = chain.output_dir / "base" / ("tiny-vl" if vision else "tiny-text")
    return existing if has_model(existing) else ensure_model(chain.output_dir / "base", chain.seed, vision)
