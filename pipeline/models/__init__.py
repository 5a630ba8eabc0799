"""Models built offline (no hub): tiny Qwen2 text and Qwen2.5-VL models for tests and benchmarks."""

from pipeline.models.tiny import (
    TinyQwen2_5_VLProcessor,
    build_tiny_processor,
    build_tiny_qwen2_5_vl,
    build_tiny_text_lm,
    train_tokenizer,
)

__all__ = [
    "TinyQwen2_5_VLProcessor",
    "build_tiny_processor",
    "build_tiny_qwen2_5_vl",
    "build_tiny_text_lm",
    "train_tokenizer",
]
