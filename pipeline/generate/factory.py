"""Build the configured backend; the stage only ever sees the `GenerationBackend` interface."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from pipeline.generate.base import GenerationBackend, TeacherConfig
from pipeline.generate.recorded import RecordedBackend, RecordingConfig


class BackendConfig(BaseModel):
    kind: Literal["recorded"] = "recorded"
    teachers: list[TeacherConfig] = Field(default_factory=list)
    recordings: list[RecordingConfig] = Field(default_factory=list)


def make_backend(config: BackendConfig, data_root: Path) -> GenerationBackend:
    if config.kind == "recorded":
        return RecordedBackend(config.recordings, data_root)
    raise ValueError(f"unknown generation backend {config.kind!r}")


def backend_identity(config: BackendConfig) -> dict:
    """What the generations depend on besides the prompt: the stage's cache key includes it."""
    return config.model_dump(mode="json")
