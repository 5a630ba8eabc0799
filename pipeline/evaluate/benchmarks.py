"""Benchmark sets as their authors published them -> problems the generation backends and the verifier take.

MATH-V (MathVision) `test.jsonl` / `testmini.jsonl` is read by the same adapter that ingests it as a training
source (pipeline/ingest/sources/mathvision.py: `MathVisionAdapter`, one parser for both), a slice of lines at a time.
Evaluation keeps what it reports by (subject, level) and the benchmark's own gold: for multiple choice the
letter (`options` are the option texts, or just the letters when the options are drawn in the figure), which
the verifier resolves against the options.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pipeline.config_base import StrictConfig
from pipeline.errors import RowError
from pipeline.ingest.images import ImageLimits, read_image_file
from pipeline.ingest.sources import MathVisionAdapter, ProblemFields, SourceConfig

DEFAULT_BENCHMARK_PATH = "mathvision/testmini.jsonl"


class BenchmarkConfig(StrictConfig):
    name: str = "mathvision_testmini"
    format: Literal["mathvision"] = "mathvision"
    path: str = DEFAULT_BENCHMARK_PATH  # relative to the run's data_root unless absolute
    domain: str = "visual_math"  # picks the system prompt (pipeline.prompts)
    limit: int | None = None  # the first problems only (smoke runs)


class BenchmarkError(ValueError):
    """A benchmark file that cannot be evaluated as published (named line and reason)."""


class MathVisionBenchmark:
    def __init__(self, config: BenchmarkConfig, data_root: Path):
        self.config = config
        source = SourceConfig(name=config.name, format="mathvision", path=config.path, domain=config.domain, limit=config.limit)
        self.adapter = MathVisionAdapter(source, Path(data_root))
        self.path = self.adapter.path

    def identity(self) -> list:
        stat = self.path.stat()
        return [self.config.model_dump(mode="json"), stat.st_size, stat.st_mtime_ns]

    def count(self) -> int:
        return self.adapter.count()

    def problems(self, start: int, stop: int, with_images: bool = True) -> Iterator[dict]:
        """A benchmark row that cannot be evaluated as published is an error naming it: scores over a
        silently shortened benchmark would not compare with anyone's."""
        for record in self.adapter.records(start, stop):
            try:
                if record.parse_error:
                    raise RowError("invalid_json", record.parse_error)
                yield self._problem(self.adapter.to_fields(record), with_images)
            except (RowError, OSError) as error:
                raise BenchmarkError(f"{self.path} row {record.source_id}: {error}") from None

    def _problem(self, fields: ProblemFields, with_images: bool) -> dict:
        images = []
        for image in fields.images if with_images else ():
            data = read_image_file(self.adapter.image_root, image.path, ImageLimits())
            images.append({"bytes": data, "sha256": hashlib.sha256(data).hexdigest()})
        return {
            "problem_id": f"{self.config.name}-{fields.source_id}",
            "source": self.config.name,
            "source_id": fields.source_id,
            "domain": self.config.domain,
            "question": fields.question,
            "choices": fields.choices,
            "answer": fields.metadata.get("answer_letter") or fields.answer,
            "question_type": fields.question_type,
            "answer_type": fields.answer_type,
            "subject": str(fields.metadata.get("subject") or "unknown"),
            "level": int(fields.metadata.get("level") or 0),
            "images": images,
        }


def open_benchmark(config: BenchmarkConfig, data_root: Path) -> MathVisionBenchmark:
    return {"mathvision": MathVisionBenchmark}[config.format](config, data_root)
