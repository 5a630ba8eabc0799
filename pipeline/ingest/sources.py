"""Source adapters: raw files as their authors published them -> canonical problem fields.

An adapter only knows its format. It yields `RawRecord`s (a source id and the raw value, or the
parse error that replaced it) and turns one raw value into `ProblemFields`, raising `RowError` for a
bad row. Image decoding, ids and validation are shared and live in the ingest stage.
"""

from __future__ import annotations

import json
import os
import re
from array import array
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from pipeline.config_base import StrictConfig
from pipeline.errors import RowError
from pipeline.io import stable_hash
from pipeline.paths import cache_dir

SPILL_VERSION = 1  # of the JSON-lines copy of a JSON document; a new layout gets new cache keys


class SourceConfig(StrictConfig):
    name: str
    format: Literal["tabmwp", "mathvista", "mathvision", "gsm8k", "jsonl", "json", "hf"]
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


@dataclass
class ImageRef:
    """An image as the source gives it: a path below the image root, or inline bytes."""

    path: str | None = None
    data: bytes | None = None


@dataclass
class ProblemFields:
    source_id: str
    question: str
    answer: str
    answer_type: str
    question_type: str
    images: list[ImageRef] = field(default_factory=list)
    choices: list[str] | None = None
    precision: int | None = None
    unit: str | None = None
    solution: str | None = None
    problem_type: str | None = None  # one of schemas.PROBLEM_TYPES when the source labels it
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RawRecord:
    source_id: str
    value: Any
    parse_error: str | None = None


def _text(value: Any, name: str, numbers_allowed: bool = True) -> str:
    """Stripped non-empty text; a JSON number is accepted where sources write answers as numbers."""
    allowed = str | int | float if numbers_allowed else str
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise RowError("invalid_field", f"{name}: expected text, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise RowError("missing_field", f"{name} is empty")
    return text


def _record(value: Any) -> dict:
    if not isinstance(value, dict):
        raise RowError("invalid_record", f"expected a JSON object, got {type(value).__name__}")
    return value


def _choices(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(c, str | int | float) for c in value):
        raise RowError("invalid_field", "choices: expected a list of strings")
    return [str(c) for c in value]


def _optional_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RowError("invalid_field", f"{name}: {value!r} is not a number") from None
    if not number.is_integer():
        raise RowError("invalid_field", f"{name}: {value!r} is not an integer")
    return int(number)


def numeric_answer_type(answer: str) -> str:
    try:
        return "integer" if float(answer.replace(",", "")).is_integer() else "float"
    except ValueError:
        return "text"


class SourceAdapter(ABC):
    def __init__(self, config: SourceConfig, data_root: Path):
        self.config = config
        path = Path(config.path)
        self.path = path if path.is_absolute() else data_root / path
        root = Path(config.image_root) if config.image_root else (self.path if self.path.is_dir() else self.path.parent)
        self.image_root = root if root.is_absolute() else data_root / root

    def identity(self) -> list:
        """What a change of the raw input looks like, for the stage's config hash."""
        stat = self.path.stat()
        return [str(self.path), stat.st_size, stat.st_mtime_ns]

    def count(self) -> int:
        total = self._count()
        return min(total, self.config.limit) if self.config.limit is not None else total

    def records(self, start: int, stop: int) -> Iterator[RawRecord]:
        yield from self._records(start, min(stop, self.count()))

    @abstractmethod
    def _count(self) -> int: ...

    @abstractmethod
    def _records(self, start: int, stop: int) -> Iterator[RawRecord]: ...

    @abstractmethod
    def to_fields(self, record: RawRecord) -> ProblemFields: ...


class JsonLinesAdapter(SourceAdapter):
    """One JSON object per line; a line that does not parse becomes a quarantined row.

    A row's source id is the value of its `id_field` when it has one, else its 0-based line number in
    the file (blank lines are skipped, not renumbered); a line that does not parse keeps its line number.
    """

    id_field: str | None = None

    @property
    def lines_path(self) -> Path:
        return self.path

    @cached_property
    def _line_starts(self) -> tuple[array, array]:
        """(line number, byte offset) of every non-blank line, from one streaming pass: a shard seeks to
        its first line, so memory is 16 bytes a line, not the file (a 1.6M-line file is gigabytes)."""
        numbers, offsets = array("q"), array("q")
        offset = 0
        with open(self.lines_path, "rb") as lines:
            for number, line in enumerate(lines):
                if line.strip():
                    numbers.append(number)
                    offsets.append(offset)
                offset += len(line)
        return numbers, offsets

    def _count(self) -> int:
        return len(self._line_starts[0])

    def _lines(self, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
        numbers, offsets = self._line_starts
        if start >= stop:
            return
        with open(self.lines_path, "rb") as lines:
            lines.seek(offsets[start])
            wanted = iter(numbers[start:stop])
            number = next(wanted)
            for line in lines:
                if line.strip():
                    yield number, line.rstrip(b"\n")
                    number = next(wanted, None)
                    if number is None:
                        return

    def _records(self, start: int, stop: int) -> Iterator[RawRecord]:
        for number, line in self._lines(start, stop):
            try:
                value = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as error:
                yield RawRecord(str(number), line[:2000].decode("utf-8", "replace"), f"invalid_json: {error}")
                continue
            yield RawRecord(self._source_id(value, str(number)), value)

    def _source_id(self, value: Any, fallback: str) -> str:
        """The row's `id_field` value when it is a usable id (text or integer), else `fallback`."""
        source_id = value.get(self.id_field) if self.id_field and isinstance(value, dict) else None
        valid_id = isinstance(source_id, str | int) and not isinstance(source_id, bool)
        return str(source_id) if valid_id else fallback


class JsonDocumentAdapter(JsonLinesAdapter):
    """One JSON document: an object keyed by problem id (TabMWP, MathVista) or an array of rows (the
    LLaMA-Factory / ShareGPT layout of released SFT sets).

    The document is streamed once with ijson into a JSON-lines copy in the cache (`[key, value]` a line,
    keyed by the file's path, size and mtime), which shards then seek into like any JSON-lines source:
    memory stays one row, not the file (a 1.6M-row array is gigabytes)."""

    shapes: tuple[str, ...] = ("object", "array")  # top-level values this format accepts

    @cached_property
    def lines_path(self) -> Path:
        stat = self.path.stat()
        cache_key = stable_hash([str(self.path.resolve()), stat.st_size, stat.st_mtime_ns, SPILL_VERSION], length=24)
        spill = cache_dir() / "json-lines" / f"{cache_key}.jsonl"
        if not spill.exists():
            spill.parent.mkdir(parents=True, exist_ok=True)
            staging = spill.with_name(f".{spill.name}.{os.getpid()}.tmp")
            try:
                with open(self.path, "rb") as document, open(staging, "w", encoding="utf-8") as lines:
                    for key, value in self._stream(document):
                        lines.write(json.dumps([key, value], ensure_ascii=False) + "\n")
                os.replace(staging, spill)  # another process may have won the race: its copy is identical
            finally:
                staging.unlink(missing_ok=True)
        return spill

    def _stream(self, document) -> Iterator[tuple[str, Any]]:
        import ijson

        try:
            _, shape, _ = next(ijson.parse(document))  # the first event says what the top level is
            document.seek(0)
            if shape == "start_map" and "object" in self.shapes:
                yield from ((str(k), v) for k, v in ijson.kvitems(document, "", use_float=True))
            elif shape == "start_array" and "array" in self.shapes:
                yield from ((str(i), v) for i, v in enumerate(ijson.items(document, "item", use_float=True)))
            else:
                wanted = " or ".join({"object": "a JSON object keyed by problem id", "array": "a JSON array of rows"}[x] for x in self.shapes)
                raise ValueError(f"{self.config.name}: {self.path} must hold {wanted}")
        except ijson.JSONError as error:
            raise ValueError(f"{self.config.name}: {self.path} is not valid JSON: {error}") from None

    def _records(self, start: int, stop: int) -> Iterator[RawRecord]:
        for _, line in self._lines(start, stop):
            key, value = json.loads(line)
            yield RawRecord(self._source_id(value, key), value)


class JsonObjectAdapter(JsonDocumentAdapter):
    """A JSON file holding one object keyed by problem id (TabMWP, MathVista)."""

    shapes = ("object",)


class TabMWPAdapter(JsonObjectAdapter):
    """TabMWP problems.json + tables/{id}.png (the table image is the multimodal input)."""

    ANSWER_TYPES = {"integer_number": "integer", "decimal_number": "float"}

    def to_fields(self, record: RawRecord) -> ProblemFields:
        row = _record(record.value)
        question_type = {"multi_choice": "multi_choice", "free_text": "free_form"}.get(row.get("ques_type"))
        if question_type is None:
            raise RowError("invalid_field", f"ques_type: {row.get('ques_type')!r}")
        unit = row.get("unit")
        return ProblemFields(
            source_id=record.source_id,
            question=_text(row.get("question"), "question", numbers_allowed=False),
            answer=_text(row.get("answer"), "answer"),
            answer_type=self.ANSWER_TYPES.get(row.get("ans_type"), "text"),
            question_type=question_type,
            images=[ImageRef(path=f"tables/{record.source_id}.png")],
            choices=_choices(row.get("choices")),
            unit=_text(unit, "unit") if unit else None,
            solution=row.get("solution") if isinstance(row.get("solution"), str) else None,
            metadata={k: row.get(k) for k in ("table_title", "table", "grade", "ans_type", "ques_type", "split")},
        )


class MathVistaAdapter(JsonObjectAdapter):
    """MathVista testmini.json: image paths relative to the file, precision and unit inline."""

    def to_fields(self, record: RawRecord) -> ProblemFields:
        row = _record(record.value)
        question_type = row.get("question_type")
        if question_type not in ("multi_choice", "free_form"):
            raise RowError("invalid_field", f"question_type: {question_type!r}")
        answer_type = row.get("answer_type")
        if answer_type not in ("integer", "float", "text", "list"):
            raise RowError("invalid_field", f"answer_type: {answer_type!r}")
        image = row.get("image")
        unit = row.get("unit")
        return ProblemFields(
            source_id=_text(row.get("pid", record.source_id), "pid"),
            question=_text(row.get("question"), "question", numbers_allowed=False),
            answer=_text(row.get("answer"), "answer"),
            answer_type=answer_type,
            question_type=question_type,
            images=[ImageRef(path=_text(image, "image"))] if image else [],
            choices=_choices(row.get("choices")),
            precision=_optional_int(row.get("precision"), "precision"),
            unit=_text(unit, "unit") if unit else None,
            metadata=row.get("metadata") if isinstance(row.get("metadata"), dict) else {},
        )


_CALCULATOR_ANNOTATION = re.compile(r"<<[^>]*>>")


class GSM8KAdapter(JsonLinesAdapter):
    """GSM8K jsonl: the answer field is the solution with calculator annotations, then '#### x'."""

    def to_fields(self, record: RawRecord) -> ProblemFields:
        row = _record(record.value)
        worked = _text(row.get("answer"), "answer")
        if "####" not in worked:
            raise RowError("missing_field", "answer has no '#### <final answer>' line")
        solution, final = worked.rsplit("####", 1)
        answer = _text(final, "final answer").replace(",", "")
        return ProblemFields(
            source_id=record.source_id,
            question=_text(row.get("question"), "question", numbers_allowed=False),
            answer=answer,
            answer_type=numeric_answer_type(answer),
            question_type="free_form",
            solution=_CALCULATOR_ANNOTATION.sub("", solution).strip(),
        )


# MATH-V's 16 subjects in the 13-type vocabulary (schemas.PROBLEM_TYPES): metric and transformation
# geometry are plane geometry; analytic geometry (graphs and curves in coordinates) is functions.
MATHVISION_SUBJECT_TYPES = {
    "algebra": "algebra",
    "arithmetic": "arithmetic",
    "counting": "counting",
    "combinatorics": "combinatorics",
    "logic": "logic",
    "graph theory": "graph_theory",
    "topology": "topology",
    "statistics": "statistics",
    "solid geometry": "solid_geometry",
    "descriptive geometry": "descriptive_geometry",
    "combinatorial geometry": "combinatorial_geometry",
    "transformation geometry": "plane_geometry",
    "metric geometry - angle": "plane_geometry",
    "metric geometry - area": "plane_geometry",
    "metric geometry - length": "plane_geometry",
    "analytic geometry": "functions",
}
_IMAGE_PLACEHOLDER = re.compile(r"<image(\d+)>")
_MATH_ANSWER = re.compile(r"[\\$/^π√]")
# JSON reads "\f" and "\b" as control characters: "\frac" arrives as a form feed + "rac".
_BROKEN_LATEX_ESCAPE = re.compile(r"([\f\b])(?=[a-z])")


def _repair_latex_escapes(text: str) -> str:
    return _BROKEN_LATEX_ESCAPE.sub(lambda m: "\\f" if m[1] == "\f" else "\\b", text)


def math_answer_type(answer: str) -> str:
    """integer / float for numbers, expression for LaTeX or symbolic forms, text otherwise."""
    numeric = numeric_answer_type(answer)
    return "expression" if numeric == "text" and _MATH_ANSWER.search(answer) else numeric


def mathvision_fields(row: Any, source_id: str) -> ProblemFields:
    """One MATH-V `test.jsonl` / `testmini.jsonl` row as published -> problem fields.

    `options` holds the five option texts, or just their letters when the options are drawn in the
    image; `answer` is the option letter for multiple choice (the gold kept here is the option's text,
    as for the other sources; the letter stays in metadata). The question marks where images go with
    `<imageN>`; MATH-V ships one composite image per problem whose panels are labelled `<image1>:`,
    `<image2>:`..., so one image file carries any number of placeholders. A question that names images
    while the row carries none, or more images than a row with several files carries, is quarantined.
    """
    row = _record(row)
    question = _text(row.get("question"), "question", numbers_allowed=False)
    answer = row.get("answer")
    answer = _text(_repair_latex_escapes(answer) if isinstance(answer, str) else answer, "answer")  # before strip()
    image = row.get("image")
    files = image if isinstance(image, list) else [image] if image else []
    images = [ImageRef(path=_text(f, "image")) for f in files]
    named = sorted({int(n) for n in _IMAGE_PLACEHOLDER.findall(question)})
    if named and not images:
        raise RowError("image_placeholder_without_image", f"question names <image{named[0]}> but the row carries no image")
    if len(images) > 1 and len(named) > len(images):
        raise RowError("image_placeholder_without_image", f"question names {len(named)} images, the row carries {len(images)}")
    options = _choices(row.get("options")) or None
    metadata = {"level": row.get("level"), "subject": row.get("subject"), "image_placeholders": len(named)}
    if options:
        letter = answer.upper()
        index = ord(letter) - ord("A") if len(letter) == 1 else -1
        if not 0 <= index < len(options):
            raise RowError("invalid_field", f"answer {answer!r} is not the letter of one of {len(options)} options")
        metadata["answer_letter"] = letter
        metadata["options_in_image"] = all(o.strip().upper() == chr(ord("A") + i) for i, o in enumerate(options))
        answer = options[index]
    subject = row.get("subject")
    problem_type = MATHVISION_SUBJECT_TYPES.get(subject) if isinstance(subject, str) else None
    if subject is not None and problem_type is None:
        raise RowError("invalid_field", f"subject {subject!r} is not a MATH-V subject")
    solution = row.get("solution")
    return ProblemFields(
        source_id=source_id,
        question=question,
        answer=answer,
        answer_type="text" if options else math_answer_type(answer),
        question_type="multi_choice" if options else "free_form",
        images=images,
        choices=options,
        solution=solution if isinstance(solution, str) and solution.strip() else None,
        problem_type=problem_type,
        metadata=metadata,
    )


class MathVisionAdapter(JsonLinesAdapter):
    """MATH-V `test.jsonl` / `testmini.jsonl` + `images/` (paths relative to the file's folder)."""

    id_field = "id"

    def to_fields(self, record: RawRecord) -> ProblemFields:
        return mathvision_fields(record.value, record.source_id)


class ColumnMappedFields:
    """`to_fields` for generic sources: canonical field -> source column, plus constant defaults."""

    config: SourceConfig

    @property
    def id_field(self) -> str | None:
        return self.config.columns.get("source_id")

    def _get(self, row: dict, name: str) -> Any:
        column = self.config.columns.get(name)
        return row.get(column) if column else self.config.defaults.get(name)

    @staticmethod
    def _images(value: Any) -> list[ImageRef]:
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
        row = _record(record.value)
        answer = _text(self._get(row, "answer"), "answer")
        choices = _choices(self._get(row, "choices"))
        answer_type = self._get(row, "answer_type") or numeric_answer_type(answer)
        question_type = self._get(row, "question_type") or ("multi_choice" if choices else "free_form")
        unit, solution = self._get(row, "unit"), self._get(row, "solution")
        return ProblemFields(
            source_id=record.source_id,
            question=_text(self._get(row, "question"), "question", numbers_allowed=False),
            answer=answer,
            answer_type=_text(answer_type, "answer_type"),
            question_type=_text(question_type, "question_type"),
            images=self._images(self._get(row, "images")),
            choices=choices,
            precision=_optional_int(self._get(row, "precision"), "precision"),
            unit=_text(unit, "unit") if unit else None,
            solution=_text(solution, "solution") if solution else None,
            problem_type=self._get(row, "problem_type"),
        )


class GenericJsonLinesAdapter(ColumnMappedFields, JsonLinesAdapter):
    """Any JSON-lines file, read line by line so one malformed row cannot fail the whole source."""


class GenericJsonAdapter(ColumnMappedFields, JsonDocumentAdapter):
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


ADAPTERS: dict[str, type[SourceAdapter]] = {
    "tabmwp": TabMWPAdapter,
    "mathvista": MathVistaAdapter,
    "mathvision": MathVisionAdapter,
    "gsm8k": GSM8KAdapter,
    "jsonl": GenericJsonLinesAdapter,
    "json": GenericJsonAdapter,
    "hf": HFDatasetAdapter,
}


def make_adapter(config: SourceConfig, data_root: Path) -> SourceAdapter:
    return ADAPTERS[config.format](config, data_root)
