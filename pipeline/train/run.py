"""One GRPO + VAS run from a TrainConfig: validate the RL set, get a model, train, write metrics/plots/VPS state."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.train.config import TrainConfig
from pipeline.train.dataset import RLDatasetReport, load_validated_rl_dataset

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
TRAINED_MODEL_DIR = "model"  # the final policy, beside the checkpoints
# Files of a model folder that the trainer does not write: the tiny processor's remote code (so the vLLM venv
# loads the checkpoint too) and its config naming it.
MODEL_SIDE_FILES = ("processing_tiny_qwen2_5_vl.py", "processor_config.json")


@dataclass
class TrainResult:
    rows: int
    rows_with_images: int
    steps: int = 0
    model_path: str | None = None  # the weights training started from
    trained_model_dir: str | None = None  # the trained policy (`from_pretrained` loads it)
    final_metrics: dict = field(default_factory=dict)
    vas_seconds: float = 0.0
    train_seconds: float = 0.0
    files: list[str] = field(default_factory=list)


def ensure_model(output_dir: Path, seed: int, vision: bool) -> Path:
    """A tiny offline model under `output_dir`: Qwen2.5-VL when the set has images, else Qwen2."""
    from pipeline.models.tiny import build_tiny_qwen2_5_vl, build_tiny_text_lm

    if vision:
        return build_tiny_qwen2_5_vl(output_dir / "tiny-vl", seed=seed)
    return build_tiny_text_lm(output_dir / "tiny-text", seed=seed)


def is_model_dir(path: Path | None) -> bool:
    return path is not None and (Path(path) / "config.json").exists()


def chosen_start(config: TrainConfig) -> Path | None:
    """The weights GRPO starts from (see TrainConfig.start_from); None: a tiny model, built for the set."""
    if isinstance(config.start_from, Path):
        if not is_model_dir(config.start_from):
            raise FileNotFoundError(f"start_from={config.start_from}: no model there (config.json missing)")
        return config.start_from
    if config.start_from == "sft" and is_model_dir(config.sft_model_dir):
        return config.sft_model_dir
    return config.model_path


def start_model(config: TrainConfig, report: RLDatasetReport) -> Path:
    return chosen_start(config) or ensure_model(config.output_dir, config.seed, vision=bool(report.rows_with_images))


def save_trained_model(trainer, base: Path, out_dir: Path) -> Path:
    """Weights + tokenizer/processor of the trained model, loadable with `from_pretrained` from `out_dir`."""
    trainer.save_model(str(out_dir))
    for name in MODEL_SIDE_FILES:
        if (Path(base) / name).exists():
            shutil.copy2(Path(base) / name, Path(out_dir) / name)
    return Path(out_dir)


def is_vision_model(model_path: Path) -> bool:
    config = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    return "vision_config" in config


def load_processing_class(model_path: Path):
    """A VL model's processor (the tiny one is registered by importing pipeline.models), else its tokenizer."""
    from transformers import AutoProcessor, AutoTokenizer

    import pipeline.models  # noqa: F401  registers the tiny processor with AutoProcessor

    return (AutoProcessor if is_vision_model(model_path) else AutoTokenizer).from_pretrained(model_path)


def build_trainer(config: TrainConfig, dataset, model_path: Path):
    from pipeline.train.rewards import build_reward_functions
    from pipeline.train.trl_trainer import VASGRPOTrainer

    if "images" in dataset.column_names and not is_vision_model(model_path):
        dataset = dataset.remove_columns("images")  # a text model trains on the question text alone, as in SFT

    return VASGRPOTrainer(
        model=str(model_path),
        reward_funcs=build_reward_functions(config.rewards)[0],
        args=config.grpo_args(),
        train_dataset=dataset,
        processing_class=load_processing_class(model_path),
        vas=config.vas,
        dynamic_sampling=config.dynamic_sampling,
        pre_rollout_skip=config.pre_rollout_skip,
    )


def run_training(config: TrainConfig) -> TrainResult:
    dataset, report = load_validated_rl_dataset(config.rl_dataset_dir)
    result = TrainResult(rows=report.rows, rows_with_images=report.rows_with_images)
    if config.max_steps == 0:
        return result

    from transformers.trainer_utils import get_last_checkpoint

    from pipeline.train.plots import write_training_plots

    if config.max_rows is not None:
        dataset = dataset.select(range(min(config.max_rows, len(dataset))))
    config.output_dir.mkdir(parents=True, exist_ok=True)
    model_path = start_model(config, report)
    trainer = build_trainer(config, dataset, model_path)
    checkpoint = get_last_checkpoint(str(config.output_dir)) if config.resume else None
    try:
        output = trainer.train(resume_from_checkpoint=checkpoint)
    finally:
        trainer.close_rewards()
    trainer.save_vas_state(config.output_dir)
    result.trained_model_dir = str(save_trained_model(trainer, model_path, config.output_dir / TRAINED_MODEL_DIR))
    history = trainer.state.log_history
    (config.output_dir / METRICS_FILE).write_text("".join(json.dumps(entry) + "\n" for entry in history), encoding="utf-8")
    vps_upper = config.vas.vps.ovs_weight + config.vas.vps.tds_weight
    plots = write_training_plots(
        trainer.vas_history.vps_snapshots, trainer.vas_history.zero_variance_fraction, config.output_dir, vps_upper
    )
    step_logs = [entry for entry in history if "loss" in entry]
    result.steps = trainer.state.global_step
    result.model_path = str(model_path)
    result.final_metrics = step_logs[-1] if step_logs else {}
    result.vas_seconds = trainer.vas_seconds()
    result.train_seconds = output.metrics.get("train_runtime", 0.0)
    result.files = [str(path) for path in plots] + [str(config.output_dir / METRICS_FILE)]
    (config.output_dir / SUMMARY_FILE).write_text(json.dumps(result.__dict__, indent=2, default=str), encoding="utf-8")
    return result
