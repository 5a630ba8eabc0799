"""TabMWP, MathVista and GSM8K files as their authors published them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pipeline.errors import RowError
from pipeline.ingest.sources.readers import JsonLinesAdapter, JsonObjectAdapter
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


def _named(value: Any, names: Mapping[str, str]) -> str | None:
    """What `names` calls a text field's value; None for a missing, unknown or non-text value (a list would not hash)."""
    return names.get(value) if isinstance(value, str) else None


class TabMWPAdapter(JsonObjectAdapter):
    """TabMWP problems.json + tables/{id}.png (the table image is the multimodal input)."""

    ANSWER_TYPES = {"integer_number": "integer", "decimal_number": "float"}

    def to_fields(self, record: RawRecord) -> ProblemFields:
        row = record_object(record.value)
        question_type = _named(row.get("ques_type"), {"multi_choice": "multi_choice", "free_text": "free_form"})
        if question_type is None:
            raise RowError("invalid_field", f"ques_type: {row.get('ques_type')!r}")
        unit = row.get("unit")
        return ProblemFields(
            source_id=record.source_id,
            question=text_field(row.get("question"), "question", numbers_allowed=False),
            answer=text_field(row.get("answer"), "answer"),
            answer_type=_named(row.get("ans_type"), self.ANSWER_TYPES) or "text",
            question_type=question_type,
            images=[ImageRef(path=f"tables/{record.source_id}.png")],
            choices=choices_field(row.get("choices")),
            unit=text_field(unit, "unit") if unit else None,
            solution=row.get("solution") if isinstance(row.get("solution"), str) else None,
            metadata={k: row.get(k) for k in ("table_title", "table", "grade", "ans_type", "ques_type", "split")},
        )


class MathVistaAdapter(JsonObjectAdapter):
    """MathVista testmini.json: image paths relative to the file, precision and unit inline."""

    def to_fields(self, record: RawRecord) -> ProblemFields:
        row = record_object(record.value)
        question_type = row.get("question_type")
        if question_type not in ("multi_choice", "free_form"):
            raise RowError("invalid_field", f"question_type: {question_type!r}")
        answer_type = row.get("answer_type")
        if answer_type not in ("integer", "float", "text", "list"):
            raise RowError("invalid_field", f"answer_type: {answer_type!r}")
        image = row.get("image")
        unit = row.get("unit")
        return ProblemFields(
            source_id=text_field(row.get("pid", record.source_id), "pid"),
            question=text_field(row.get("question"), "question", numbers_allowed=False),
            answer=text_field(row.get("answer"), "answer"),
            answer_type=answer_type,
            question_type=question_type,
            images=[ImageRef(path=text_field(image, "image"))] if image else [],
            choices=choices_field(row.get("choices")),
            precision=optional_int(row.get("precision"), "precision"),
            unit=text_field(unit, "unit") if unit else None,
            metadata=metadata if isinstance(metadata := row.get("metadata"), dict) else {},
        )


_CALCULATOR_ANNOTATION = re.compile(r"<<[^>]*>>")


class GSM8KAdapter(JsonLinesAdapter):
    """GSM8K jsonl: the answer field is the solution with calculator annotations, then '#### x'."""

    def to_fields(self, record: RawRecord) -> ProblemFields:
        row = record_object(record.value)
        worked = text_field(row.get("answer"), "answer")
        if "####" not in worked:
            raise RowError("missing_field", "answer has no '#### <final answer>' line")
        solution, final = worked.rsplit("####", 1)
        answer = text_field(final, "final answer").replace(",", "")
        return ProblemFields(
            source_id=record.source_id,
            question=text_field(row.get("question"), "question", numbers_allowed=False),
            answer=answer,
            answer_type=numeric_answer_type(answer),
            question_type="free_form",
            solution=_CALCULATOR_ANNOTATION.sub("", solution).strip(),
        )
