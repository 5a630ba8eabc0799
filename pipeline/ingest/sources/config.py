"""One source of a run: where its file is, which adapter reads it, and how generic columns map."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from pipeline.config_base import StrictConfig
from pipeline.ingest.sources.registry import check_format


class SourceConfig(StrictConfig):
    name: str
    format: str  # a key of the adapter registry (`registry.ADAPTERS`)
    path: str  # file or folder, relative to the run's data_root unless absolute
    domain: str
    image_root: str | None = None  # images are read only below this folder (default: the file's folder)
    allow_missing_images: bool = False  # keep a multimodal problem whose image file is absent, text-only
    limit: int | None = None
    license: str | None = None  # SPDX id or name, shown on the data cards of every set the source feeds
    # Generic adapters: "jsonl" (read line by line), "json" (one array or object of rows, streamed) and "hf"
    # (anything `datasets.load_dataset` reads).
    hf_builder: str | None = None  # a dataset name or builder ("parquet", "csv"); None: infer from path
    hf_split: str = "train"
    columns: dict[str, str] = Field(default_factory=dict)  # canonical field -> source column
    defaults: dict[str, Any] = Field(default_factory=dict)  # constant values for fields the source lacks

    @field_validator("format")
    @classmethod
    def _registered_format(cls, format: str) -> str:
        return check_format(format)
