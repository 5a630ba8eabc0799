"""Generic sources: any JSON lines, JSON document or `datasets`-loadable table, read through a column
mapping (canonical field -> source column) plus constant defaults for the fields the source lacks."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

from pipeline.errors import RowError
from pipeline.ingest.sources.readers import JsonDocumentAdapter, JsonLinesAdapter, SourceAdapter
from pipeline.ingest.sources.records import (
    ImageRef,
    ProblemFields,
    RawRecord,
    choices_field,
    numeric_answer_type,
    optional_int,
    record_object,
    text_field,
)

if TYPE_CHECKING:
    from pipeline.ingest.sources.config import SourceConfig


class ColumnMappedFields:
    """`to_fields` for generic sources: canonical field -> source column, plus constant defaults."""

    config: SourceConfig

    @property  # read-only here: a generic source names its id column in its config
    def id_field(self) -> str | None:
        return self.config.columns.get("source_id")

    def _get(self, row: dict, name: str) -> Any:
        column = self.config.columns.get(name)
        return row.get(column) if column else self.config.defaults.get(name)

    @staticmethod
    def _images(value: Any) -> list[ImageRef]:
        """A path, a {bytes, path} struct (the Hub's Image feature as stored), or a list of them."""
        values = value if isinstance(value, list) else ([] if value is None else [value])
        refs = []
        for item in values:
            if isinstance(item, dict) and isinstance(item.get("bytes"), bytes | bytearray) and item["bytes"]:
                path = item.get("path")
                refs.append(ImageRef(path=path if isinstance(path, str) else None, data=bytes(item["bytes"])))
            elif isinstance(item, dict) and isinstance(item.get("path"), str):
                refs.append(ImageRef(path=item["path"]))
            elif isinstance(item, str):
                refs.append(ImageRef(path=item))
            else:
                raise RowError("invalid_field", f"images: unsupported value of type {type(item).__name__}")
        return refs

    def to_fields(self, record: RawRecord) -> ProblemFields:
        row = record_object(record.value)
        answer = text_field(self._get(row, "answer"), "answer")
        choices = choices_field(self._get(row, "choices"))
        answer_type = self._get(row, "answer_type") or numeric_answer_type(answer)
        question_type = self._get(row, "question_type") or ("multi_choice" if choices else "free_form")
        unit, solution = self._get(row, "unit"), self._get(row, "solution")
        return ProblemFields(
            source_id=record.source_id,
            question=text_field(self._get(row, "question"), "question", numbers_allowed=False),
            answer=answer,
            answer_type=text_field(answer_type, "answer_type"),
            question_type=text_field(question_type, "question_type"),
            images=self._images(self._get(row, "images")),
            choices=choices,
            precision=optional_int(self._get(row, "precision"), "precision"),
            unit=text_field(unit, "unit") if unit else None,
            solution=text_field(solution, "solution") if solution else None,
            problem_type=self._get(row, "problem_type"),
        )


# ColumnMappedFields reads `id_field` from the source's config: the readers' class attribute becomes read-only here.
class GenericJsonLinesAdapter(ColumnMappedFields, JsonLinesAdapter):  # type: ignore[override]
    """Any JSON-lines file, read line by line so one malformed row cannot fail the whole source."""


class GenericJsonAdapter(ColumnMappedFields, JsonDocumentAdapter):  # type: ignore[override]
    """Any JSON document of rows (an array, or an object keyed by id), streamed (see JsonDocumentAdapter)."""


class HFDatasetAdapter(ColumnMappedFields, SourceAdapter):
    """Any `datasets`-loadable source (Hub name, local parquet folder) with a column mapping.

    The table is memory-mapped Arrow, so slicing a shard out of it keeps memory bounded.
    """

    def identity(self) -> list:
        return [str(self.path), self.config.hf_builder, self.config.hf_split] + (
            super().identity() if self.path.exists() else []
        )

    @cached_property
    def _dataset(self):
        import datasets

        builder = self.config.hf_builder
        if builder is None:
            suffix = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv"}
            files = [self.path] if self.path.is_file() else sorted(p for p in self.path.rglob("*") if p.suffix in suffix)
            if not files:
                raise ValueError(f"{self.config.name}: no parquet/arrow/csv files under {self.path}")
            dataset = datasets.load_dataset(suffix[files[0].suffix], data_files=[str(f) for f in files], split="train")
        else:
            dataset = datasets.load_dataset(builder, split=self.config.hf_split)
        images_column = self.config.columns.get("images")
        if images_column and images_column in dataset.features:
            feature = dataset.features[images_column]
            if isinstance(feature, datasets.Image):
                dataset = dataset.cast_column(images_column, datasets.Image(decode=False))
            elif isinstance(feature, datasets.List) and isinstance(feature.feature, datasets.Image):
                dataset = dataset.cast_column(images_column, datasets.List(datasets.Image(decode=False)))
        return dataset

    def _count(self) -> int:
        return len(self._dataset)

    def _records(self, start: int, stop: int) -> Iterator[RawRecord]:
        for offset, row in enumerate(self._dataset.select(range(start, stop))):
            source_id = row.get(self.id_field) if self.id_field else None
            yield RawRecord(str(source_id if source_id is not None else start + offset), row)
