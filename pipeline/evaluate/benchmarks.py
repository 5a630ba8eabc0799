"""Benchmark sets as their authors published them -> problems the generation backends and the verifier take.

Minimal reader for the MATH-V (MathVision) jsonl (`test.jsonl` / `testmini.jsonl`): the ingest adapter for
MATH-V as a training source lives in pipeline/ingest; this one only keeps what evaluation reports by (subject,
level) and reads a slice of lines at a time. Multiple choice: `options` are the option texts (or just the
letters when the options are drawn in the figure) and `answer` is the letter, which the verifier resolves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Literal

from pipeline.config_base import StrictConfig

from pipeline.ingest.sources import numeric_answer_type

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
        path = Path(config.path)
        self.path = path if path.is_absolute() else Path(data_root) / path

    def identity(self) -> list:
        stat = self.path.stat()
        return [self.config.model_dump(mode="json"), stat.st_size, stat.st_mtime_ns]

    @cached_property
    def _lines(self) -> list[bytes]:
        lines = [line for line in self.path.read_bytes().split(b"\n") if line.strip()]
        return lines[: self.config.limit] if self.config.limit is not None else lines

    def count(self) -> int:
        return len(self._lines)

    def problems(self, start: int, stop: int, with_images: bool = True) -> Iterator[dict]:
        for number, line in enumerate(self._lines[start:stop], start):
            try:
                row = json.loads(line)
                yield self._problem(row, with_images)
            except (ValueError, KeyError, TypeError, OSError) as error:
                raise BenchmarkError(f"{self.path} line {number + 1}: {type(error).__name__}: {error}") from None

    def _problem(self, row: dict, with_images: bool) -> dict:
        options = [str(option) for option in row.get("options") or []]
        answer = str(row["answer"]).strip()
        images = []
        if with_images and row.get("image"):
            data = (self.path.parent / row["image"]).read_bytes()
            images.append({"bytes": data, "sha256": hashlib.sha256(data).hexdigest()})
        return {
            "problem_id": f"{self.config.name}-{row['id']}",
            "source": self.config.name,
            "source_id": str(row["id"]),
            "domain": self.config.domain,
            "question": row["question"],
            "choices": options or None,
            "answer": answer,
            "question_type": "multi_choice" if options else "free_form",
            "answer_type": "text" if options else numeric_answer_type(answer),
            "subject": str(row.get("subject") or "unknown"),
            "level": int(row.get("level") or 0),
            "images": images,
        }


def open_benchmark(config: BenchmarkConfig, data_root: Path) -> MathVisionBenchmark:
    return {"mathvision": MathVisionBenchmark}[config.format](config, data_root)
