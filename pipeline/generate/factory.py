"""Build the configured backend; the stage only ever sees the `GenerationBackend` interface."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from pipeline.config_base import StrictConfig
from pipeline.generate.base import GenerationBackend, TeacherConfig
from pipeline.generate.openai_server import OpenAIServerBackend, OpenAIServerConfig
from pipeline.generate.recorded import RecordedBackend, RecordingConfig
from pipeline.generate.transformers_backend import TransformersBackend, TransformersConfig
from pipeline.generate.vllm_engine import VLLMEngineBackend, VLLMEngineConfig


class BackendConfig(StrictConfig):
    kind: Literal["recorded", "openai", "vllm", "transformers"] = "recorded"
    teachers: list[TeacherConfig] = Field(default_factory=list)  # every kind but "recorded"
    recordings: list[RecordingConfig] = Field(default_factory=list)  # "recorded"
    openai: OpenAIServerConfig = OpenAIServerConfig()
    vllm: VLLMEngineConfig = VLLMEngineConfig()
    transformers: TransformersConfig = TransformersConfig()


def make_backend(config: BackendConfig, data_root: Path) -> GenerationBackend:
    if config.kind == "recorded":
        return RecordedBackend(config.recordings, data_root)
    if config.kind == "openai":
        return OpenAIServerBackend(config.teachers, config.openai)
    if config.kind == "vllm":
        return VLLMEngineBackend(config.teachers, config.vllm)
    return TransformersBackend(config.teachers, config.transformers)


def backend_identity(config: BackendConfig) -> dict:
    """What generations depend on besides the prompt (never where they are served from or how fast)."""
    if config.kind == "recorded":
        return {"kind": "recorded", "recordings": [r.model_dump(mode="json") for r in config.recordings]}
    return {"teachers": [t.model_dump(mode="json") for t in config.teachers]}
