"""The source formats: one registry from a config's `format` to its adapter class. Adding a format is
one adapter class and one line here; a config that names any other format is refused, listing these."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.ingest.sources.columns import GenericJsonAdapter, GenericJsonLinesAdapter, HFDatasetAdapter
from pipeline.ingest.sources.mathvision import MathVisionAdapter
from pipeline.ingest.sources.published import GSM8KAdapter, MathVistaAdapter, TabMWPAdapter
from pipeline.ingest.sources.readers import SourceAdapter

if TYPE_CHECKING:
    from pipeline.ingest.sources.config import SourceConfig

ADAPTERS: dict[str, type[SourceAdapter]] = {
    "tabmwp": TabMWPAdapter,
    "mathvista": MathVistaAdapter,
    "mathvision": MathVisionAdapter,
    "gsm8k": GSM8KAdapter,
    "jsonl": GenericJsonLinesAdapter,  # generic: read through `columns` / `defaults`
    "json": GenericJsonAdapter,
    "hf": HFDatasetAdapter,
}


def check_format(format: str) -> str:
    """`format` when it is a registered one; else a ValueError naming the nearest spelling and every format."""
    if format not in ADAPTERS:
        close = difflib.get_close_matches(format, list(ADAPTERS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(f"unknown source format {format!r}{hint}; known formats: {', '.join(sorted(ADAPTERS))}")
    return format


def make_adapter(config: SourceConfig, data_root: Path) -> SourceAdapter:
    return ADAPTERS[config.format](config, data_root)
