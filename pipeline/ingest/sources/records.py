"""What an adapter reads and gives: raw records, the canonical problem fields, and the checks of one
raw field that every adapter shares (a bad value is a `RowError`: the row is quarantined with its reason)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import RowError
from pipeline.ingest.images import ImageLimits, read_image_file


@dataclass(frozen=True)
class RawRecord:
    source_id: str
    value: Any
    parse_error: str | None = None


@dataclass
class ImageRef:
    """An image as the source gives it: a path below the image root, or inline bytes."""

    path: str | None = None
    data: bytes | None = None

    def read(self, root: Path, limits: ImageLimits) -> bytes:
        """The image's bytes: inline, else the file at `path` below `root`; a reference to neither is a row error."""
        if self.data is not None:
            return self.data
        if self.path is None:
            raise RowError("image_missing", "an image with neither a path nor inline bytes")
        return read_image_file(root, self.path, limits)


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


def text_field(value: Any, name: str, numbers_allowed: bool = True) -> str:
    """Stripped non-empty text; a JSON number is accepted where sources write answers as numbers."""
    allowed = str | int | float if numbers_allowed else str
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise RowError("invalid_field", f"{name}: expected text, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise RowError("missing_field", f"{name} is empty")
    return text


def record_object(value: Any) -> dict:
    if not isinstance(value, dict):
        raise RowError("invalid_record", f"expected a JSON object, got {type(value).__name__}")
    return value


def choices_field(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(c, str | int | float) for c in value):
        raise RowError("invalid_field", "choices: expected a list of strings")
    return [str(c) for c in value]


def optional_int(value: Any, name: str) -> int | None:
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
