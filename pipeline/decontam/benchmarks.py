"""Benchmark test sets, read by the ingest adapters (text only: images are never opened)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pydantic import field_validator

from pipeline.config_base import StrictConfig
from pipeline.errors import RowError
from pipeline.ingest.sources import ADAPTERS, SourceAdapter, SourceConfig, make_adapter


class BenchmarkConfig(StrictConfig):
    name: str  # becomes the column `contaminated_<name>`
    format: str  # an ingest adapter: tabmwp, mathvista, gsm8k, hf
    path: str  # relative to the data root unless absolute
    limit: int | None = None

    @field_validator("name")
    @classmethod
    def _column_safe(cls, name: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ValueError(f"benchmark name {name!r} must be lower_snake_case (it names a column)")
        return name

    @field_validator("format")
    @classmethod
    def _known_format(cls, format: str) -> str:
        if format not in ADAPTERS:
            raise ValueError(f"unknown benchmark format {format!r}; one of {sorted(ADAPTERS)}")
        return format


@dataclass(frozen=True)
class BenchmarkItem:
    benchmark: str
    source_id: str
    question: str
    choices: list[str] | None
    answer: str


def adapter(config: BenchmarkConfig, data_root: Path) -> SourceAdapter:
    source = SourceConfig(
        name=config.name, format=config.format, path=config.path, domain="benchmark", limit=config.limit
    )
    return make_adapter(source, data_root)


def read_items(config: BenchmarkConfig, data_root: Path) -> tuple[list[BenchmarkItem], Counter]:
    """Every readable test item of one benchmark, and the reasons of the rows that were not."""
    reader = adapter(config, data_root)
    items, skipped = [], Counter()
    for record in reader.records(0, reader.count()):
        try:
            if record.parse_error:
                raise RowError(record.parse_error.partition(":")[0])
            fields = reader.to_fields(record)
        except RowError as error:
            skipped[error.reason] += 1
            continue
        items.append(BenchmarkItem(config.name, fields.source_id, fields.question, fields.choices, fields.answer))
    return items, skipped
