"""Build the configured backend; the stage only ever sees the `GenerationBackend` interface."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from pipeline.config_base import StrictConfig
from pipeline.generate.base import GenerationBackend, TeacherConfig
from pipeline.generate.openai_server import OpenAIServerBackend, OpenAIServerConfig, reasoning_option_errors
from pipeline.generate.recorded import RecordedBackend, RecordingConfig
from pipeline.generate.transformers_backend import TransformersBackend, TransformersConfig
from pipeline.generate.vllm_engine import VLLMEngineBackend, VLLMEngineConfig


class BackendConfig(StrictConfig):
    kind: Literal["recorded", "openai", "vllm", "transformers"] = "recorded"
    # Every kind but "recorded": teachers write the CoTs of the cold-start set, the policy's rollouts
    # give the pass rates (e.g. a large teacher, and the model to be trained).
    teachers: list[TeacherConfig] = Field(default_factory=list)
    policy: list[TeacherConfig] = Field(default_factory=list)
    recordings: list[RecordingConfig] = Field(default_factory=list)  # "recorded"
    openai: OpenAIServerConfig = OpenAIServerConfig()
    vllm: VLLMEngineConfig = VLLMEngineConfig()
    transformers: TransformersConfig = TransformersConfig()

    @model_validator(mode="after")
    def _reasoning_options_can_be_sent(self) -> BackendConfig:
        """A thinking budget or effort that the backend (or an endpoint's server kind) cannot take fails
        here, before any request, rather than being dropped or refused mid-run."""
        errors = [f"{model.name}: {error}" for model in self.teachers + self.policy for error in self._reasoning_errors(model)]
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def _reasoning_errors(self, model: TeacherConfig) -> list[str]:
        sampling = model.sampling
        if self.kind == "openai":
            kinds = dict.fromkeys(e.server_kind for e in self.openai.endpoints if e.model in (None, model.model))
            return [f"{error} (endpoint server_kind {kind})" for kind in kinds for error in reasoning_option_errors(sampling, kind)]
        errors = []
        if sampling.thinking_budget is not None and not (self.kind == "vllm" and self.vllm.reasoning_parser):
            errors.append(f"backend {self.kind} takes a thinking_budget only as vllm with vllm.reasoning_parser set")
        if sampling.reasoning_effort is not None:
            errors.append(f"backend {self.kind} takes no reasoning_effort (serve the model and use backend.kind=openai)")
        return errors


def make_backend(config: BackendConfig, data_root: Path) -> GenerationBackend:
    if config.kind == "recorded":
        return RecordedBackend(config.recordings, data_root)
    if config.kind == "openai":
        return OpenAIServerBackend(config.teachers, config.openai, config.policy)
    if config.kind == "vllm":
        return VLLMEngineBackend(config.teachers, config.vllm, config.policy)
    return TransformersBackend(config.teachers, config.transformers, config.policy)


def backend_identity(config: BackendConfig) -> dict:
    """What generations depend on besides the prompt (never where they are served from or how fast)."""
    if config.kind == "recorded":
        return {"kind": "recorded", "recordings": [r.model_dump(mode="json") for r in config.recordings]}
    return {
        "teachers": [t.model_dump(mode="json") for t in config.teachers],
        "policy": [t.model_dump(mode="json") for t in config.policy],
    }
