"""Batches that mix rows with and without images (the default RL set: 686 diagrams, 175 text rows) reach a tiny
Qwen2.5-VL model in every composition: SFT collation, GRPO + VAS rollout inputs and loss, and evaluation generation.
The rows are real problems: TabMWP with its table image, GSM8K as text."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.generate.base import SamplingParams, TeacherConfig, build_request
from pipeline.generate.transformers_backend import TransformersBackend
from pipeline.models.tiny import build_tiny_qwen2_5_vl, train_tokenizer
from pipeline.train.config import TrainConfig
from pipeline.train.dataset import load_rl_dataset
from pipeline.train.run import build_trainer
from pipeline.train.sft import SFTStageConfig, build_sft_trainer, run_sft
from pipeline.train.trl_trainer import processor_image_lists, with_image_lists
from rl_rows import gsm8k_rl_rows, tabmwp_rl_rows, write_cold_start_set, write_set

# Row order of the small sets: with batches of two in published order, one batch of each composition.
COMPOSITIONS = {"all-image": ("image", "image"), "all-text": ("text", "text"), "mixed": ("image", "text")}


@pytest.fixture(scope="module")
def tiny_vl(tmp_path_factory) -> Path:
    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny-vl"), tokenizer=train_tokenizer(vocab_size=1024, vision=True))


@pytest.fixture(scope="module")
def mixed_rows(data_root) -> list[dict]:
    """image, image, text, text, image, text: batches of two are all-image, all-text, mixed."""
    images, texts = iter(tabmwp_rl_rows(data_root, 3)), iter(gsm8k_rl_rows(data_root, 3))
    return [next(images if kind == "image" else texts) for kinds in COMPOSITIONS.values() for kind in kinds]


def _image_token_counts(input_ids: torch.Tensor, image_token: int) -> list[int]:
    return (input_ids == image_token).sum(dim=1).tolist()


def _assert_images_line_up(batch: dict, rows_with_images: list[bool], image_token: int, merge: int) -> None:
    """Each row's image tokens match its own image's patches, and no row without an image has any."""
    tokens = _image_token_counts(batch["input_ids"], image_token)
    if not any(rows_with_images):
        assert "pixel_values" not in batch and tokens == [0] * len(tokens)
        return
    patches = batch["image_grid_thw"].prod(dim=-1)
    assert batch["pixel_values"].shape[0] == int(patches.sum())
    expected = iter((patches // merge**2).tolist())
    assert tokens == [next(expected) if has_image else 0 for has_image in rows_with_images]


def test_image_lists_for_trl_and_for_the_processor():
    image = object()
    rows = [{"images": [image]}, {"images": None}]
    assert with_image_lists(rows) == [{"images": [image]}, {"images": []}]
    assert with_image_lists([{"prompt": "text model: no images column"}]) == [{"prompt": "text model: no images column"}]
    assert processor_image_lists([[image], None]) == [[image], []] and processor_image_lists(None) is None


def test_sft_collates_and_trains_every_batch_composition(tmp_path, mixed_rows, tiny_vl):
    config = SFTStageConfig(
        cold_start_dir=write_cold_start_set(mixed_rows, tmp_path / "cold_start"), output_dir=tmp_path / "sft",
        model_path=tiny_vl, max_steps=len(COMPOSITIONS), batch_size=2, shuffle_buffer=0, max_length=None,
    )
    trainer, _ = build_sft_trainer(config)
    processor = trainer.processing_class
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    batches = iter(trainer.get_train_dataloader())
    for name, kinds in COMPOSITIONS.items():
        batch = next(batches)
        _assert_images_line_up(batch, [kind == "image" for kind in kinds], image_token, processor.image_processor.merge_size)
        supervised = batch["labels"] != -100
        assert supervised.any() and not (supervised & (batch["input_ids"] == image_token)).any(), name
    result = run_sft(config)
    assert result.steps == len(COMPOSITIONS) and all(torch.isfinite(torch.tensor(result.losses)))


def test_grpo_builds_inputs_and_a_loss_for_every_batch_composition(tmp_path, mixed_rows, tiny_vl):
    config = TrainConfig(
        rl_dataset_dir=write_set(mixed_rows, tmp_path / "rl"), output_dir=tmp_path / "grpo", model_path=tiny_vl,
        max_steps=1, num_generations=2, prompts_per_step=2, max_completion_length=4,
    )
    dataset = load_rl_dataset(config.rl_dataset_dir)
    trainer = build_trainer(config, dataset, tiny_vl)
    processor = trainer.processing_class
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    try:
        for index, (name, kinds) in enumerate(COMPOSITIONS.items()):
            rows = [dataset[2 * index + k] for k in range(2) for _ in range(config.num_generations)]  # TRL's repeats
            with_images = [kind == "image" for kind in kinds for _ in range(config.num_generations)]
            assert [bool(row["images"]) for row in rows] == with_images, name
            inputs = trainer._generate_and_score_completions(rows)
            assert inputs.get("num_images") == ([int(flag) for flag in with_images] if any(with_images) else None), name
            _assert_images_line_up(
                {"input_ids": inputs["prompt_ids"], **inputs}, with_images, image_token, processor.image_processor.merge_size
            )
            loss = trainer.compute_loss(trainer.model, inputs)
            assert torch.isfinite(loss), name
    finally:
        trainer.close_rewards()


def test_transformers_backend_answers_image_and_text_requests_with_a_vl_model(mixed_rows, tiny_vl):
    teacher = TeacherConfig(name="vl", model=str(tiny_vl), sampling=SamplingParams(temperature=1.0, max_tokens=6, seed=1))
    table = mixed_rows[0]["images"][0]["bytes"]
    problems = [
        {"problem_id": "table", "question": "What is the total?", "domain": "table_math", "images": [{"bytes": table, "sha256": "t"}]},
        {"problem_id": "text", "question": "What is 2 + 3?", "domain": "arithmetic_word", "images": []},
    ]
    requests = [build_request(problem, teacher, 0) for problem in problems]
    backend = TransformersBackend([teacher])
    results = backend.generate(requests)
    assert all(result.error is None and 0 < result.completion_tokens <= 6 for result in results)
    assert results[0].prompt_tokens > results[1].prompt_tokens  # the table's image tokens are in the prompt
    assert [r.text for r in backend.generate(requests)] == [r.text for r in results]  # seeded: the same text again
