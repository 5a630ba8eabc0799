"""MATH-V (MathVision) `test.jsonl` / `testmini.jsonl` as published: read as a training source by ingest
and as a benchmark by evaluation, with one parser for both."""

from __future__ import annotations

import re
from typing import Any

from pipeline.errors import RowError
from pipeline.ingest.sources.readers import JsonLinesAdapter
from pipeline.ingest.sources.records import (
    ImageRef,
    ProblemFields,
    RawRecord,
    choices_field,
    numeric_answer_type,
    record_object,
    text_field,
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
    row = record_object(row)
    question = text_field(row.get("question"), "question", numbers_allowed=False)
    answer = row.get("answer")
    answer = text_field(_repair_latex_escapes(answer) if isinstance(answer, str) else answer, "answer")  # before strip()
    image = row.get("image")
    files = image if isinstance(image, list) else [image] if image else []
    images = [ImageRef(path=text_field(f, "image")) for f in files]
    named = sorted({int(n) for n in _IMAGE_PLACEHOLDER.findall(question)})
    if named and not images:
        raise RowError("image_placeholder_without_image", f"question names <image{named[0]}> but the row carries no image")
    if len(images) > 1 and len(named) > len(images):
        raise RowError("image_placeholder_without_image", f"question names {len(named)} images, the row carries {len(images)}")
    options = choices_field(row.get("options")) or None
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
