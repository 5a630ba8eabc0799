"""Tiny offline models: reload round-trip, identical tokenisation, generation, chat template, seeded weights."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

from pipeline.models.tiny import build_tiny_qwen2_5_vl, build_tiny_text_lm, shared_training_texts, train_tokenizer

SAMPLE = "Janet’s ducks lay 16 eggs per day.\n<think>16 - 3 - 4 = 9</think> \\boxed{18}  tabs\tand  spaces"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"}]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(vocab_size=1024)


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory, tokenizer):
    return build_tiny_text_lm(tmp_path_factory.mktemp("text"), seed=0, tokenizer=tokenizer)


@pytest.fixture(scope="module")
def vl_dir(tmp_path_factory, tokenizer):
    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("vl"), seed=0, tokenizer=tokenizer)


def test_tokenizer_trains_on_real_shared_data():
    texts = list(shared_training_texts())
    assert len(texts) > 2000 and any("eggs" in text for text in texts)


def test_text_model_reloads_with_identical_tokenisation(text_dir, tokenizer):
    reloaded = AutoTokenizer.from_pretrained(text_dir)
    assert reloaded(SAMPLE).input_ids == tokenizer(SAMPLE).input_ids
    assert reloaded.decode(reloaded(SAMPLE).input_ids) == SAMPLE
    for special in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|image_pad|>"):
        assert len(reloaded(special).input_ids) == 1


def test_chat_template_and_generation(text_dir):
    tok = AutoTokenizer.from_pretrained(text_dir)
    model = AutoModelForCausalLM.from_pretrained(text_dir)
    prompt = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"
    )
    inputs = tok(prompt, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape[1] == inputs.input_ids.shape[1] + 4
    assert model.config.hidden_size // model.config.num_attention_heads == 32


def test_weights_are_deterministic_for_a_seed(tmp_path, tokenizer, text_dir):
    again = build_tiny_text_lm(tmp_path / "again", seed=0, tokenizer=tokenizer)
    other = build_tiny_text_lm(tmp_path / "other", seed=1, tokenizer=tokenizer)
    first, second, third = (load_file(d / "model.safetensors") for d in (text_dir, again, other))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], third[name]) for name in first)


def test_vl_model_round_trip_with_a_real_table_image(vl_dir, data_root):
    processor = AutoProcessor.from_pretrained(vl_dir)
    model = AutoModelForImageTextToText.from_pretrained(vl_dir)
    assert not hasattr(processor, "video_processor")
    image = Image.open(next((data_root / "tabmwp" / "tables").glob("*.png"))).convert("RGB")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Read the table."}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert "<|vision_start|><|image_pad|><|vision_end|>Read the table." in text
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    image_tokens = int((inputs.input_ids == model.config.image_token_id).sum())
    assert image_tokens == int(inputs.image_grid_thw.prod()) // 4 <= 32
    out = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs.input_ids.shape[1] + 3


def test_vl_processor_loads_as_remote_code_without_this_module(vl_dir):
    """Another venv (e.g. vLLM's) never imports pipeline.models: the saved code file must suffice."""
    script = (
        "from transformers import AutoProcessor;"
        f"p = AutoProcessor.from_pretrained({str(vl_dir)!r}, trust_remote_code=True);"
        "print(type(p).__name__)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().endswith("TinyQwen2_5_VLProcessor"), result.stderr[-2000:]
