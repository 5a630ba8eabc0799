"""The four records of the system plus the quarantine table.

Problem          one normalised problem (image(s) + question + gold answer), id derived from content
Generation       one sample for one problem in one role (a teacher's chain of thought for the cold-start
                 set, or a policy rollout for the pass rate), with its verdict once verified
ColdStartRecord  one published SFT example: conversational messages + images (TRL SFTTrainer reads it)
RLRecord         one published RL prompt: conversational prompt + images + gold answer fields that
                 TRL's GRPOTrainer hands to reward functions as keyword arguments
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

QUESTION_TYPES = ("free_form", "multi_choice")
# teacher: chains of thought whose verified ones feed the cold-start set; rollout: policy samples whose
# verified outcomes give a problem's pass rate. Kept apart in config and data, as in MMR1 (Gemini CoTs,
# Qwen2.5-VL-72B pass rates); one model may serve both roles, as two separate samples.
GENERATION_ROLES = ("teacher", "rollout")
ANSWER_TYPES = ("integer", "float", "fraction", "text", "expression", "list", "boolean")
# The 13 fine-grained problem types the RL set is balanced over (MMR1's vocabulary).
PROBLEM_TYPES = (
    "arithmetic",
    "counting",
    "combinatorics",
    "algebra",
    "functions",
    "plane_geometry",
    "solid_geometry",
    "combinatorial_geometry",
    "descriptive_geometry",
    "graph_theory",
    "logic",
    "statistics",
    "topology",
)

# Internal image record: the bytes plus what dedupe and cards need without decoding them again.
IMAGE_STRUCT = pa.struct(
    [
        ("bytes", pa.binary()),
        ("path", pa.string()),
        ("sha256", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
    ]
)
# What HF `datasets.Image` stores in Parquet; published sets use exactly this.
HF_IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
MESSAGE_STRUCT = pa.struct([("role", pa.string()), ("content", pa.string())])

PROBLEM_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("source", pa.string()),
        ("source_id", pa.string()),
        ("domain", pa.string()),
        ("problem_type", pa.string()),  # from the source when it labels one (else null: score assigns it)
        ("question", pa.string()),
        ("images", pa.list_(IMAGE_STRUCT)),
        ("choices", pa.list_(pa.string())),
        ("answer", pa.string()),
        ("answer_type", pa.string()),
        ("question_type", pa.string()),
        ("precision", pa.int32()),
        ("unit", pa.string()),
        ("solution", pa.string()),
        ("metadata", pa.string()),  # JSON object: source-specific fields kept verbatim
    ]
)

GENERATION_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),  # hash of (model, prompt, images, sampling params, sample index)
        ("problem_id", pa.string()),
        ("teacher", pa.string()),  # the generating model's label (a teacher, or the policy in a rollout)
        ("role", pa.string()),  # one of GENERATION_ROLES
        ("sample_index", pa.int32()),
        ("prompt", pa.string()),  # JSON list of chat messages as sent (images referenced by sha256)
        ("raw_text", pa.string()),  # the final content: the answer after any thinking (null: cut off while thinking)
        ("reasoning", pa.string()),  # the thinking, apart from the content (null: the reply had none)
        ("finish_reason", pa.string()),  # "length": cut off by max_tokens, a result judged "truncated"
        ("prompt_tokens", pa.int32()),
        ("completion_tokens", pa.int32()),  # the thinking included
        ("reasoning_tokens", pa.int32()),  # as the server reports them (null: not reported, never estimated)
        ("error", pa.string()),  # null when the request succeeded
        ("extracted_answer", pa.string()),
        ("correct", pa.bool_()),
        ("verdict_reason", pa.string()),
        ("quality_ok", pa.bool_()),  # null for rollouts: only a teacher's CoT can become an example
        ("quality_reason", pa.string()),
    ]
)

COLD_START_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("source", pa.string()),
        ("domain", pa.string()),
        ("problem_type", pa.string()),
        ("teacher", pa.string()),
        ("messages", pa.list_(MESSAGE_STRUCT)),  # system, user, assistant (<think>..</think> + answer)
        ("images", pa.list_(HF_IMAGE_STRUCT)),
        ("answer", pa.string()),
        ("pass_rate", pa.float64()),  # the policy's, over its rollouts; null: no rollouts (difficulty unknown)
    ]
)

RL_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("prompt", pa.list_(MESSAGE_STRUCT)),  # system + user
        ("images", pa.list_(HF_IMAGE_STRUCT)),
        ("answer", pa.string()),
        ("answer_type", pa.string()),
        ("question_type", pa.string()),
        ("choices", pa.list_(pa.string())),
        ("precision", pa.int32()),
        ("unit", pa.string()),
        ("pass_rate", pa.float64()),
        ("num_rollouts", pa.int32()),
        ("num_correct", pa.int32()),  # the counts behind pass_rate: VAS seeds its scores from them
        ("source", pa.string()),
        ("domain", pa.string()),
        ("problem_type", pa.string()),
    ]
)

# One judged benchmark sample: a model's response to one problem, with the verifier's verdict.
EVALUATION_SCHEMA = pa.schema(
    [
        ("benchmark", pa.string()),
        ("model", pa.string()),
        ("problem_id", pa.string()),
        ("subject", pa.string()),
        ("level", pa.int32()),
        ("sample_index", pa.int32()),
        ("answer", pa.string()),  # gold
        ("response", pa.string()),  # None when generation failed
        ("extracted", pa.string()),
        ("extraction_method", pa.string()),
        ("correct", pa.bool_()),  # False for a failed generation
        ("reason", pa.string()),  # the verifier's reason, or "generation_failed"
        ("error", pa.string()),  # the backend's error, None on success
        ("images_dropped", pa.bool_()),  # a text-only model was asked without the problem's images
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        ("stage", pa.string()),
        ("shard", pa.string()),
        ("source", pa.string()),
        ("source_id", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("raw", pa.string()),  # the offending input, JSON-encoded and truncated
    ]
)


def _require_text(row: Mapping[str, Any], field: str, errors: list[str]) -> None:
    value = row.get(field)
    if not isinstance(value, str) or not value.strip():
        errors.append(f"{field}: expected non-empty string, got {type(value).__name__}")


def _require_choice(row: Mapping[str, Any], field: str, allowed: tuple[str, ...], errors: list[str]) -> None:
    if row.get(field) not in allowed:
        errors.append(f"{field}: {row.get(field)!r} not in {allowed}")


def validate_problem(row: Mapping[str, Any]) -> list[str]:
    """Problems with a Problem row; empty when it is valid."""
    errors: list[str] = []
    for field in ("problem_id", "source", "source_id", "domain", "question", "answer"):
        _require_text(row, field, errors)
    _require_choice(row, "question_type", QUESTION_TYPES, errors)
    _require_choice(row, "answer_type", ANSWER_TYPES, errors)
    if row.get("problem_type") is not None:
        _require_choice(row, "problem_type", PROBLEM_TYPES, errors)
    choices = row.get("choices")
    if row.get("question_type") == "multi_choice":
        if not choices or len(choices) < 2:
            errors.append("choices: multi_choice needs at least two choices")
    for image in row.get("images") or []:
        if not image.get("bytes") or not image.get("sha256") or not image.get("width") or not image.get("height"):
            errors.append("images: each image needs bytes, sha256, width and height")
    precision = row.get("precision")
    if precision is not None and not (0 <= precision <= 12):
        errors.append(f"precision: {precision} out of range 0..12")
    try:
        if not isinstance(json.loads(row.get("metadata") or "{}"), dict):
            errors.append("metadata: expected a JSON object")
    except (TypeError, ValueError):
        errors.append("metadata: not valid JSON")
    return errors


def validate_table(table: pa.Table, schema: pa.Schema) -> None:
    """Raise a clear error when a table does not carry exactly the schema's columns and types."""
    if not table.schema.equals(schema, check_metadata=False):
        expected = {f.name: str(f.type) for f in schema}
        actual = {f.name: str(f.type) for f in table.schema}
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        wrong = sorted(n for n in set(expected) & set(actual) if expected[n] != actual[n])
        raise ValueError(f"schema mismatch: missing={missing} extra={extra} wrong_type={wrong}")


def hf_features(schema: pa.Schema):
    """`datasets.Features` for a published schema, so `load_dataset(dir)` decodes images."""
    from datasets import Features, Image, List
    from datasets.features.features import generate_from_arrow_type

    features = {}
    for field in schema:
        if field.type == pa.list_(HF_IMAGE_STRUCT):
            features[field.name] = List(Image())
        else:
            features[field.name] = generate_from_arrow_type(field.type)
    return Features(features)
