"""Benchmark test sets, read by the ingest adapters: text, plus the perceptual hash of each image
that ships with the benchmark (decoded and bounded exactly as ingest does, then hashed like dedupe)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from pipeline.config_base import StrictConfig
from pipeline.dedupe.imagehash import phash_bytes
from pipeline.errors import RowError
from pipeline.ingest.images import ImageLimits, normalise_image
from pipeline.ingest.sources import ProblemFields, SourceAdapter, SourceConfig, check_format, make_adapter


class BenchmarkConfig(StrictConfig):
    name: str  # becomes the column `contaminated_<name>`
    format: str  # an ingest adapter: tabmwp, mathvista, mathvision, gsm8k, or a generic one (json, jsonl, hf)
    path: str  # relative to the data root unless absolute
    limit: int | None = None
    # For the generic adapters, as in SourceConfig: where the images are, and canonical field -> benchmark column.
    image_root: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    defaults: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _column_safe(cls, name: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ValueError(f"benchmark name {name!r} must be lower_snake_case (it names a column)")
        return name

    @field_validator("format")
    @classmethod
    def _known_format(cls, format: str) -> str:
        return check_format(format)


@dataclass(frozen=True)
class BenchmarkItem:
    benchmark: str
    source_id: str
    question: str
    choices: list[str] | None
    answer: str
    image_phashes: list[bytes]  # one per image found beside the benchmark file; empty: text only


def adapter(config: BenchmarkConfig, data_root: Path) -> SourceAdapter:
    source = SourceConfig(domain="benchmark", **config.model_dump())
    return make_adapter(source, data_root)


def image_phashes(reader: SourceAdapter, fields: ProblemFields, phash_size: int) -> list[bytes]:
    """Hashes of the item's images that can be read (MathVista's testmini ships without its images)."""
    hashes = []
    for ref in fields.images:
        try:
            data = ref.read(reader.image_root, ImageLimits())
            image = normalise_image(data, path=ref.path or "", limits=ImageLimits())
        except RowError:
            continue
        hashes.append(phash_bytes(image.bytes, phash_size).astype(">u8").tobytes())
    return hashes


def read_items(config: BenchmarkConfig, data_root: Path, phash_size: int) -> tuple[list[BenchmarkItem], Counter]:
    """Every readable test item of one benchmark, and the reasons of the rows that were not."""
    reader = adapter(config, data_root)
    items: list[BenchmarkItem] = []
    skipped: Counter[str] = Counter()
    for record in reader.records(0, reader.count()):
        try:
            if record.parse_error:
                raise RowError(record.parse_error.partition(":")[0])
            fields = reader.to_fields(record)
        except RowError as error:
            skipped[error.reason] += 1
            continue
        hashes = image_phashes(reader, fields, phash_size)
        if len(hashes) < len(fields.images):
            skipped["images_unavailable_text_only"] += len(fields.images) - len(hashes)
        items.append(BenchmarkItem(config.name, fields.source_id, fields.question, fields.choices, fields.answer, hashes))
    return items, skipped
