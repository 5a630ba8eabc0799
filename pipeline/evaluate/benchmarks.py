"""Benchmark sets as their authors published them -> problems the generation backends and the verifier take.

Each benchmark file is read through an ingest adapter (pipeline/ingest/sources/), a slice of rows at a time:
MATH-V (MathVision) `testmini.jsonl` by the adapter that ingests MATH-V as a training source, LogicVista's
`dataset.json` (an object keyed by id) by the generic JSON adapter with a column mapping. Evaluation keeps what it
reports by (subject, level) and the benchmark's own gold: for MATH-V multiple choice the letter (`options` are the
option texts, or just the letters when the options are drawn in the figure), which the verifier resolves against
the options; for LogicVista the option labels drawn in the figure ("C", or several such as "B, D", scored
all-or-nothing as a set). A row that cannot be evaluated as published (broken JSON, an empty field, a missing or
undecodable image, a gold that is no option label) is skipped with its reason, and the reports show those counts
beside the scores; a file that cannot be read at all is a BenchmarkError naming it.
"""

from __future__ import annotations

import hashlib
import io
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from pipeline.config_base import StrictConfig
from pipeline.errors import RowError
from pipeline.ingest.images import ImageLimits, read_image_file
from pipeline.ingest.sources import ProblemFields, RawRecord, SourceConfig, make_adapter
from pipeline.io import QuarantinedRow


class BenchmarkConfig(StrictConfig):
    name: str = "mathvision_testmini"  # names the report folder and the rows
    format: Literal["mathvision", "logicvista"] = "mathvision"
    path: str = "mathvision/testmini.jsonl"  # relative to the run's data_root unless absolute
    domain: str = "visual_math"  # picks the system prompt (pipeline.prompts)
    limit: int | None = None  # the first problems only (smoke runs)


MATHVISION_TESTMINI = BenchmarkConfig()
LOGICVISTA = BenchmarkConfig(name="logicvista", format="logicvista", path="logicvista/dataset.json", domain="visual_logic")
DEFAULT_BENCHMARKS = (MATHVISION_TESTMINI, LOGICVISTA)  # two of the paper's five (MathVerse, MathVista, ChartQA absent)


class BenchmarkError(ValueError):
    """A benchmark file that cannot be read at all (named file and reason)."""


# An option label as benchmarks draw them: one capital letter, or a number for options drawn as "1"-"5".
_LABEL = re.compile(r"[A-Z]|\d{1,2}")
_LABEL_SEPARATORS = re.compile(r"\s*(?:[,;/&]|\band\b|\s)\s*")
# What a response wraps labels in: "Option C", "(B) and (D)", "\\text{A}", "$C$", "**B**".
_LABEL_WRAPPING = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\b|\b(?:[Oo]ptions?|[Cc]hoices?|[Aa]nswers?)\b|[${}()\[\].:*]")


def option_labels(answer: str) -> tuple[str, ...]:
    """A gold such as "C" or "B, D" -> its option labels as a sorted set; RowError when a part is no label."""
    parts = [part for part in _LABEL_SEPARATORS.split(answer.strip()) if part]
    unknown = [part for part in parts if not _LABEL.fullmatch(part)]
    if not parts or unknown:
        raise RowError("invalid_answer", f"answer {answer!r}: {unknown[0] if unknown else answer!r} is not an option label")
    return tuple(sorted(set(parts), key=lambda label: (len(label), label)))


def answered_labels(extracted: str) -> tuple[str, ...] | None:
    """The option labels a response's extracted answer names ("(B) and (D)" -> ("B", "D")), None if it names other things."""
    try:
        return option_labels(_LABEL_WRAPPING.sub(" ", extracted))
    except RowError:
        return None


def judge_labels(extracted: str | None, gold: Sequence[str]) -> tuple[bool, str]:
    """(correct, reason): right only when the answer names exactly the gold's labels (all-or-nothing for several)."""
    if not extracted or not extracted.strip():
        return False, "no_answer"
    said = answered_labels(extracted)
    if said is None:
        return False, "not_an_option"
    return (True, "choice") if said == tuple(gold) else (False, "mismatch")


class Benchmark(ABC):
    """One benchmark file, read a slice of rows at a time through an ingest adapter."""

    def __init__(self, config: BenchmarkConfig, data_root: Path):
        self.config = config
        self.adapter = make_adapter(self.source(), Path(data_root))
        self.path = self.adapter.path
        if not self.path.is_file():
            raise BenchmarkError(f"benchmark {config.name}: no file at {self.path}")
        try:
            self.rows_in_file = self.adapter.count()  # the adapter reads the whole file; `limit` applies here
        except (OSError, ValueError) as error:  # the adapters' whole-file failures (unreadable, not a JSON document)
            raise BenchmarkError(f"benchmark {config.name}: {self.path} cannot be read: {error}") from None

    @abstractmethod
    def source(self) -> SourceConfig:
        """The ingest source that reads this benchmark's file."""

    @abstractmethod
    def scoring(self, fields: ProblemFields, raw: dict) -> dict[str, Any]:
        """The gold and how it is judged, and what the reports group by: answer, choices, question_type,
        answer_type, answer_labels (None: the verifier judges), subject, level."""

    def identity(self) -> list:
        stat = self.path.stat()
        return [self.config.model_dump(mode="json"), stat.st_size, stat.st_mtime_ns]

    def count(self) -> int:
        """The rows evaluated: the file's, or its first `limit`."""
        return self.rows_in_file if self.config.limit is None else min(self.rows_in_file, self.config.limit)

    def read(self, start: int, stop: int, with_images: bool = True) -> tuple[list[dict], list[QuarantinedRow]]:
        """The problems of rows [start, stop), and the rows that cannot be evaluated as published with their reason."""
        problems, skipped = [], []
        for record in self.adapter.records(start, min(stop, self.count())):
            try:
                if record.parse_error:
                    raise RowError("invalid_json", record.parse_error)
                problems.append(self._problem(record, with_images))
            except RowError as error:
                skipped.append(QuarantinedRow(self.config.name, record.source_id, error.reason, error.detail, record.value))
        return problems, skipped

    def _problem(self, record: RawRecord, with_images: bool) -> dict:
        fields = self.adapter.to_fields(record)
        scoring = self.scoring(fields, record.value)
        images = [self._image(ref.path) for ref in fields.images] if with_images else []
        return {
            "problem_id": f"{self.config.name}-{fields.source_id}",
            "source": self.config.name,
            "source_id": fields.source_id,
            "domain": self.config.domain,
            "question": fields.question,
            "images": images,
            **scoring,
        }

    def _image(self, relative: str | None) -> dict:
        try:
            data = read_image_file(self.adapter.image_root, relative or "", ImageLimits())
        except OSError as error:
            raise RowError("image_unreadable", f"{relative}: {error}") from None
        try:
            Image.open(io.BytesIO(data)).verify()
        except Exception as error:  # whatever PIL raises for a file that is no image it can read
            raise RowError("image_undecodable", f"{relative}: {type(error).__name__}") from None
        return {"bytes": data, "sha256": hashlib.sha256(data).hexdigest()}


class MathVisionBenchmark(Benchmark):
    def source(self) -> SourceConfig:
        config = self.config
        return SourceConfig(name=config.name, format="mathvision", path=config.path, domain=config.domain)

    def scoring(self, fields: ProblemFields, raw: dict) -> dict[str, Any]:
        return {
            "answer": fields.metadata.get("answer_letter") or fields.answer,
            "choices": fields.choices,
            "question_type": fields.question_type,
            "answer_type": fields.answer_type,
            "answer_labels": None,
            "subject": str(fields.metadata.get("subject") or "unknown"),
            "level": int(fields.metadata.get("level") or 0),
        }


class LogicVistaBenchmark(Benchmark):
    """`dataset.json`: {id: {question, imagename (in images/), answer (option labels), skill: [...], ...}}."""

    def source(self) -> SourceConfig:
        config = self.config
        return SourceConfig(
            name=config.name,
            format="json",
            path=config.path,
            image_root=str(Path(config.path).parent / "images"),
            domain=config.domain,
            columns={"question": "question", "answer": "answer", "images": "imagename"},
        )

    def scoring(self, fields: ProblemFields, raw: dict) -> dict[str, Any]:
        labels = option_labels(fields.answer)
        skills = raw.get("skill")
        return {
            "answer": ", ".join(labels),
            "choices": None,  # the options are drawn in the figure and the question names them
            "question_type": "free_form",
            "answer_type": "text",
            "answer_labels": list(labels),
            "subject": "/".join(skills) if isinstance(skills, list) and skills else "unknown",
            "level": 0,  # LogicVista has no levels
        }


FORMATS: dict[str, type[Benchmark]] = {"mathvision": MathVisionBenchmark, "logicvista": LogicVistaBenchmark}


def open_benchmark(config: BenchmarkConfig, data_root: Path) -> Benchmark:
    return FORMATS[config.format](config, data_root)
