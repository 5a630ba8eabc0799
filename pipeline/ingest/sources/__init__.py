"""Source adapters: raw files as their authors published them -> canonical problem fields.

`config.py` (a source's config), `records.py` (raw records, problem fields, shared field checks),
`readers.py` (the adapter base; JSON lines and JSON documents read a shard at a time), `published.py`
and `mathvision.py` (the published datasets), `columns.py` (generic sources through a column mapping,
`datasets` tables included) and `registry.py` (format -> adapter, the one list of formats).
"""

from pipeline.ingest.sources.config import SourceConfig
from pipeline.ingest.sources.mathvision import MathVisionAdapter, mathvision_fields
from pipeline.ingest.sources.readers import SourceAdapter
from pipeline.ingest.sources.records import ImageRef, ProblemFields, RawRecord
from pipeline.ingest.sources.registry import ADAPTERS, check_format, make_adapter

__all__ = [
    "ADAPTERS",
    "ImageRef",
    "MathVisionAdapter",
    "ProblemFields",
    "RawRecord",
    "SourceAdapter",
    "SourceConfig",
    "check_format",
    "make_adapter",
    "mathvision_fields",
]
