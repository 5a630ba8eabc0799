"""Trainer-ready exports of the curated sets, each loaded by its consumer's reader: verl's own RLHFDataset for the
RL parquet, LLaMA-Factory's documented ShareGPT schema (plus `datasets`' json loader it uses) for the cold start."""

from __future__ import annotations

import json

import datasets
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from pipeline.models.tiny import build_tiny_processor, train_tokenizer
from pipeline.publish.exports import IMAGE_TAG, SHAREGPT_FILE, check_sharegpt_export, export_sharegpt, export_verl
from pipeline.train.dataset import load_rl_dataset
from test_train_trl import tabmwp_rl_dir  # noqa: F401  (fixture: RL rows with real table images)

RLHFDataset = pytest.importorskip("verl.utils.dataset.rl_dataset").RLHFDataset


def test_cold_start_exports_as_llamafactory_sharegpt(tmp_path, curated_sets):
    written = curated_sets["cold_start"].parent / "cold_start-llamafactory"  # curate exports after publishing
    out = export_sharegpt(curated_sets["cold_start"], tmp_path / "lf")
    assert (out / SHAREGPT_FILE).read_bytes() == (written / SHAREGPT_FILE).read_bytes()
    assert check_sharegpt_export(out) == []
    info = json.loads((out / "dataset_info.json").read_text())["mmr_cold_start"]
    assert info["formatting"] == "sharegpt" and info["columns"]["messages"] == "conversations"
    rows = datasets.load_dataset("json", data_files=str(out / info["file_name"]), split="train")
    published = load_rl_dataset(curated_sets["cold_start"])
    assert len(rows) == len(published)
    first, source = rows[0], published[0]
    assert [t["from"] for t in first["conversations"]] == ["human", "gpt"]
    assert first["conversations"][1]["value"] == source["messages"][-1]["content"]
    assert first["system"] == source["messages"][0]["content"]
    assert first["conversations"][0]["value"].count(IMAGE_TAG) == len(first["images"]) == len(source["images"]) > 0
    # a broken export is named: an image file gone
    (out / first["images"][0]).unlink()
    assert any("missing" in problem for problem in check_sharegpt_export(out))


def _verl_config():
    return OmegaConf.create({"max_prompt_length": 4096, "filter_overlong_prompts": False, "cache_dir": "/tmp/verl-cache"})


def test_rl_set_exports_as_verl_parquet_rlhfdataset_reads(tmp_path, curated_sets):
    files = export_verl(curated_sets["rl"], tmp_path / "verl")
    written = curated_sets["rl"].parent / "rl-verl"  # curate exports after publishing
    assert [f.read_bytes() for f in files] == [(written / f.name).read_bytes() for f in files]
    tokenizer = train_tokenizer(vocab_size=512, vision=True)
    dataset = RLHFDataset([str(f) for f in files], tokenizer, _verl_config(), processor=build_tiny_processor(tokenizer))
    published = load_rl_dataset(curated_sets["rl"])
    assert len(dataset) == len(published)
    images = [len(row_images or []) for row_images in published["images"]]
    assert 0 < sum(map(bool, images)) < len(published)  # diagrams and text-only rows
    for index in (images.index(0), next(i for i, n in enumerate(images) if n)):
        row = dataset[index]
        assert row["index"] == index and row["data_source"] == published[index]["source"]
        assert row["reward_model"]["ground_truth"] == published[index]["answer"]
        content = row["raw_prompt"][-1]["content"]
        parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
        assert sum(part["type"] == "image" for part in parts) == images[index]  # one image part per diagram
        text = "".join(part.get("text") or "" for part in parts)
        assert text.strip() == published[index]["prompt"][-1]["content"].strip()
    assert {"prompt", "images", "problem", "answer", "extra_info"} <= set(pq.read_schema(files[0]).names)


def test_rl_set_with_images_exports_with_image_tags(tmp_path, tabmwp_rl_dir):  # noqa: F811
    files = export_verl(tabmwp_rl_dir, tmp_path / "verl")
    tokenizer = train_tokenizer(vocab_size=512, vision=True)
    dataset = RLHFDataset([str(f) for f in files], tokenizer, _verl_config(), processor=build_tiny_processor(tokenizer))
    row = dataset[0]
    parts = row["raw_prompt"][-1]["content"]
    assert [part["type"] for part in parts][:1] == ["image"] and parts[0]["image"].size[0] > 0
    assert row["extra_info"]["problem_id"] == "tabmwp-" + row["extra_info"]["problem_id"].split("-", 1)[1]
