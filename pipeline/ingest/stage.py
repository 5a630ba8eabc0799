"""Ingest: one source slice -> one shard of Problem rows (+ quarantined rows with reasons)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa

from pipeline.config_base import StrictConfig
from pipeline.errors import RowError
from pipeline.ingest.images import ImageLimits, normalise_image
from pipeline.ingest.sources import ProblemFields, RawRecord, SourceAdapter, SourceConfig, make_adapter
from pipeline.io import QuarantinedRow, stable_hash
from pipeline.stage import ShardResult, Stage
from pipeline.text import normalise_text
from schemas import PROBLEM_SCHEMA, validate_problem


class IngestConfig(StrictConfig):
    shard_size: int = 500
    max_question_chars: int = 20_000
    max_answer_chars: int = 2_000
    max_images: int = 8
    images: ImageLimits = ImageLimits()


def problem_id(question: str, choices: list[str] | None, answer: str, image_hashes: list[str]) -> str:
    """Stable id from content: the same problem gets the same id in any source and any run."""
    return stable_hash([question, choices or [], answer, image_hashes], length=20)


def shard_name(source: str, index: int) -> str:
    return f"{source}-{index:05d}"


class IngestStage(Stage[IngestConfig]):
    name = "problems"
    output_schema = PROBLEM_SCHEMA

    def __init__(self, config: IngestConfig, sources: list[SourceConfig], data_root: Path):
        super().__init__(config)
        self.sources = {s.name: s for s in sources}
        self.data_root = Path(data_root)

    def setup(self) -> dict[str, SourceAdapter]:
        # Adapters index their files (line offsets, a JSON document's streamable copy): once per worker process.
        return {name: make_adapter(source, self.data_root) for name, source in self.sources.items()}

    def adapter(self, source: str) -> SourceAdapter:
        return self.resources[source]

    def fingerprint(self) -> str:
        sources = [[s.identity(), self.adapter(name).identity()] for name, s in sorted(self.sources.items())]
        return stable_hash([self.name, self.config.identity(), sources])

    def shards(self) -> list[str]:
        names = []
        for source in self.sources:
            count = self.adapter(source).count()
            names += [shard_name(source, i) for i in range(math.ceil(count / self.config.shard_size))]
        return names

    def process(self, shard: str, inputs: Mapping[str, pa.Table]) -> ShardResult:
        source, index = shard.rsplit("-", 1)
        adapter = self.adapter(source)
        start = int(index) * self.config.shard_size
        rows: list[dict] = []
        quarantined: list[QuarantinedRow] = []
        stats: Counter[str] = Counter()
        for record in adapter.records(start, start + self.config.shard_size):
            stats["rows_in"] += 1
            try:
                row = self._problem_row(adapter, record)
            except RowError as error:
                quarantined.append(QuarantinedRow(source, record.source_id, error.reason, error.detail, record.value))
                continue
            rows.append(row)  # exact duplicates stay: the dedupe stage judges them, as a column
        return ShardResult(pa.Table.from_pylist(rows, schema=PROBLEM_SCHEMA), quarantined, stats)

    def _problem_row(self, adapter: SourceAdapter, record: RawRecord) -> dict:
        if record.parse_error:
            reason, _, detail = record.parse_error.partition(": ")
            raise RowError(reason, detail)
        fields = adapter.to_fields(record)
        question = normalise_text(fields.question)
        answer = normalise_text(fields.answer)
        if len(question) > self.config.max_question_chars:
            raise RowError("question_too_long", f"{len(question)} chars > {self.config.max_question_chars}")
        if len(answer) > self.config.max_answer_chars:
            raise RowError("answer_too_long", f"{len(answer)} chars > {self.config.max_answer_chars}")
        images = self._images(adapter, fields)
        choices = [normalise_text(c) for c in fields.choices] if fields.choices else None
        row = {
            "problem_id": problem_id(question, choices, answer, [i["sha256"] for i in images]),
            "source": adapter.config.name,
            "source_id": fields.source_id,
            "domain": adapter.config.domain,
            "problem_type": fields.problem_type,
            "question": question,
            "images": images,
            "choices": choices,
            "answer": answer,
            "answer_type": fields.answer_type,
            "question_type": fields.question_type,
            "precision": fields.precision,
            "unit": fields.unit,
            "solution": fields.solution,
            "metadata": json.dumps(fields.metadata, sort_keys=True, ensure_ascii=False, default=str),
        }
        errors = validate_problem(row)
        if errors:
            raise RowError("invalid_problem", "; ".join(errors))
        return row

    def _images(self, adapter: SourceAdapter, fields: ProblemFields) -> list[dict]:
        if len(fields.images) > self.config.max_images:
            raise RowError("too_many_images", f"{len(fields.images)} > {self.config.max_images}")
        images = []
        limits = self.config.images
        for ref in fields.images:
            try:
                data = ref.read(adapter.image_root, limits)
            except RowError as error:
                if error.reason == "image_missing" and adapter.config.allow_missing_images:
                    continue
                raise
            images.append(normalise_image(data, path=ref.path or "", limits=limits).as_row())
        return images
