"""The training chain: cold-start SFT -> GRPO + VAS from the SFT model -> evaluation of base, SFT and GRPO.

One typed, strict config for the three stages (`TrainOptions` holds what a run sets per stage, so `train.options`
of a curate run, pipeline/train/config.py, is checked with the rest of its config, before any work); each stage can be left out, and each is
resumable: SFT and GRPO continue from their newest checkpoint, evaluation skips shards that have a marker, and a
training stage whose folder records the same key (its settings, the content of the published set it trains on and
the weights it starts from) is not rerun at all. Folders under `output_dir`: `base/` (a tiny model, when none is given), `sft/`,
`grpo-vas/` (its trained policy in `grpo-vas/model/`), `evaluate/` (shards) and `evaluate/reports/<benchmark>/`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from pipeline.config_base import StrictConfig
from pipeline.evaluate.stage import EvalModel, EvaluateConfig, weights_identity
from pipeline.io import file_sha256, stable_hash, write_json_atomic
from pipeline.train.config import STAGES, StageName, TrainConfig, TrainOptions
from pipeline.train.run import TRAINED_MODEL_DIR, ensure_model
from pipeline.train.sft import SFTStageConfig, set_has_images

DONE_FILE = "stage_done.json"


class TrainChainConfig(TrainOptions):
    output_dir: Path
    cold_start_dir: Path | None = None  # None: no SFT (GRPO starts from the base model)
    rl_dataset_dir: Path | None = None  # None: no GRPO
    stages: list[StageName] = Field(default_factory=lambda: list(STAGES))
    model_path: Path | None = None  # the base model; None: a tiny one (VL when a set has images)
    seed: int = 0


def sft_config(chain: TrainChainConfig, base: Path | None) -> SFTStageConfig:
    where: dict[str, Any] = dict(cold_start_dir=chain.cold_start_dir, output_dir=chain.output_dir / "sft", model_path=base, seed=chain.seed)
    return SFTStageConfig(**{**chain.sft.model_dump(), "resume": True}, **where)


def grpo_config(chain: TrainChainConfig, base: Path | None) -> TrainConfig:
    where: dict[str, Any] = dict(rl_dataset_dir=chain.rl_dataset_dir, output_dir=chain.output_dir / "grpo-vas", model_path=base)
    where |= dict(sft_model_dir=chain.output_dir / "sft", seed=chain.seed)
    return TrainConfig(**{**chain.grpo.model_dump(), "resume": True}, **where)


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
    if chain.evaluate.models:
        return chain.evaluate
    return chain.evaluate.model_copy(update={"models": chain_models(chain, base)})


# Where things are is not what they are: a stage is keyed by the content it reads instead of these paths.
LOCATION_FIELDS = ("cold_start_dir", "rl_dataset_dir", "output_dir", "model_path", "sft_model_dir")


def published_content(folder: Path) -> list:
    """A published set's data by content: name and sha256 of each `data/*.parquet` file."""
    return [[path.name, file_sha256(path)] for path in sorted(Path(folder).glob("data/*.parquet"))]


def stage_key(config: StrictConfig, data_dir: Path, start_model: Path | None) -> str:
    """What decides a training stage's output: its settings (runtime fields such as `save_steps` and `resume` left
    out), the published set it trains on, by content, and the weights it starts from."""
    settings = {k: v for k, v in config.identity().items() if k not in LOCATION_FIELDS}
    return stable_hash([settings, published_content(data_dir), weights_identity(start_model)])


def stage_is_done(folder: Path, key: str) -> bool:
    """Whether `folder` holds the finished output of exactly this key (then the stage is skipped)."""
    marker = Path(folder) / DONE_FILE
    return marker.exists() and json.loads(marker.read_text(encoding="utf-8")).get("key") == key


def mark_stage_done(folder: Path, key: str, result: dict) -> None:
    write_json_atomic(Path(folder) / DONE_FILE, {"key": key, "result": result})


def done_result(folder: Path) -> dict:
    return json.loads((Path(folder) / DONE_FILE).read_text(encoding="utf-8"))["result"]


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
