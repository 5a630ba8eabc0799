"""Cold-start SFT: TRL's SFTTrainer on the published cold-start set (messages + images), streamed.

Each row's last message is the teacher's answer; it becomes the `completion` and everything before it the
`prompt`, so TRL masks the loss to the assistant turn (`completion_only_loss`) for text and vision-language models
alike, and a VL model's processor turns the images into pixel values in TRL's collator. The set is read as a
`datasets` stream (rows are decoded one batch at a time, never the whole set), with a seeded shuffle buffer so a
resumed run replays the very batches the interrupted one drew. The output directory is a model that
`from_pretrained` loads (weights + tokenizer/processor), the starting point of GRPO + VAS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from pipeline.train.config import SFTSettings, common_trainer_args
from pipeline.train.run import ensure_model, is_vision_model, load_processing_class, save_trained_model

SFT_SUMMARY_FILE = "sft_summary.json"
SFT_METRICS_FILE = "sft_metrics.jsonl"


class SFTStageConfig(SFTSettings):
    cold_start_dir: Path
    output_dir: Path
    model_path: Path | None = None  # None: a tiny model (VL when the set has images) under output_dir
    seed: int = 0

    def sft_args(self):
        from trl import SFTConfig

        return SFTConfig(
            output_dir=str(self.output_dir),
            max_steps=self.max_steps,
            per_device_train_batch_size=self.batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            learning_rate=self.learning_rate,
            lr_scheduler_type=self.lr_scheduler_type,
            warmup_steps=self.warmup_steps,
            max_length=self.max_length,
            seed=self.seed,
            completion_only_loss=True,
            gradient_checkpointing=False,
            **common_trainer_args(self.device, self.save_steps),
            # A stream has no length: the trainer must not try to split it across processes by index.
            accelerator_config={"dispatch_batches": False},
        )


@dataclass
class SFTResult:
    rows_seen: int
    steps: int = 0
    model_dir: str | None = None
    base_model: str | None = None
    losses: list[float] = field(default_factory=list)
    train_seconds: float = 0.0


def to_prompt_completion(row: dict, keep_images: bool) -> dict:
    """A cold-start row -> TRL's conversational prompt/completion: the final assistant turn is the completion."""
    messages = row["messages"]
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError(f"cold-start row {row.get('problem_id')}: the last message must be the assistant's answer")
    example = {"prompt": messages[:-1], "completion": messages[-1:]}
    if keep_images:
        example["images"] = row["images"] or []
    return example


def cold_start_stream(folder: str | Path, keep_images: bool, seed: int, shuffle_buffer: int, max_rows: int | None):
    """The published set as a `datasets.IterableDataset` of prompt/completion examples (decoded as iterated)."""
    columns = ["problem_id", "messages"] + (["images"] if keep_images else [])
    # Only the columns trained on are read from the Parquet files (a text model never loads image bytes).
    stream = datasets.load_dataset(str(folder), split="train", streaming=True, columns=columns)
    if max_rows is not None:
        stream = stream.take(max_rows)
    if shuffle_buffer > 0:
        stream = stream.shuffle(seed=seed, buffer_size=shuffle_buffer)
    return stream.map(to_prompt_completion, fn_kwargs={"keep_images": keep_images}, remove_columns=columns)


def set_has_images(folder: Path) -> bool:
    """Whether any row of the first shard carries an image (reads one column of one file)."""
    import pyarrow.parquet as pq

    first = sorted(Path(folder).glob("data/*.parquet"))[0]
    images = pq.read_table(first, columns=["images"]).column("images")
    return any(len(value) for value in images.to_pylist()[:1000] if value)


def build_sft_trainer(config: SFTStageConfig):
    """TRL's SFTTrainer on the streamed set, and the base model it starts from."""
    from trl import SFTTrainer

    config.output_dir.mkdir(parents=True, exist_ok=True)
    base = config.model_path or ensure_model(config.output_dir, config.seed, vision=set_has_images(config.cold_start_dir))
    # A text model trains on the reasoning text alone; a VL model sees the images through its processor.
    dataset = cold_start_stream(config.cold_start_dir, is_vision_model(base), config.seed, config.shuffle_buffer, config.max_rows)
    trainer = SFTTrainer(model=str(base), args=config.sft_args(), train_dataset=dataset, processing_class=load_processing_class(base))
    return trainer, base


def run_sft(config: SFTStageConfig) -> SFTResult:
    from transformers.trainer_utils import get_last_checkpoint

    if config.max_steps == 0:  # validation only: every row streams and converts
        stream = cold_start_stream(config.cold_start_dir, False, config.seed, 0, config.max_rows)
        return SFTResult(rows_seen=sum(1 for _ in stream))
    trainer, base = build_sft_trainer(config)
    checkpoint = get_last_checkpoint(str(config.output_dir)) if config.resume else None
    output = trainer.train(resume_from_checkpoint=checkpoint)
    save_trained_model(trainer, base, config.output_dir)
    history = trainer.state.log_history
    (config.output_dir / SFT_METRICS_FILE).write_text("".join(json.dumps(e) + "\n" for e in history), encoding="utf-8")
    result = SFTResult(rows_seen=trainer.state.global_step * config.batch_size * config.gradient_accumulation_steps)
    result.steps = trainer.state.global_step
    result.base_model = str(base)
    result.model_dir = str(config.output_dir)
    result.losses = [entry["loss"] for entry in history if "loss" in entry]
    result.train_seconds = output.metrics.get("train_runtime", 0.0)
    (config.output_dir / SFT_SUMMARY_FILE).write_text(json.dumps(result.__dict__, indent=2), encoding="utf-8")
    return result
