"""Canonical record schemas (pyarrow) and their validation.

Every stage reads and writes these tables; validation returns the list of problems with a row so
that callers can quarantine it with a reason instead of crashing.
"""

from schemas.records import (
    ANSWER_TYPES,
    COLD_START_SCHEMA,
    EVALUATION_SCHEMA,
    GENERATION_ROLES,
    GENERATION_SCHEMA,
    IMAGE_STRUCT,
    MESSAGE_STRUCT,
    PROBLEM_SCHEMA,
    PROBLEM_TYPES,
    QUARANTINE_SCHEMA,
    QUESTION_TYPES,
    RL_SCHEMA,
    hf_features,
    validate_problem,
    validate_table,
)

__all__ = [
    "ANSWER_TYPES",
    "COLD_START_SCHEMA",
    "EVALUATION_SCHEMA",
    "GENERATION_ROLES",
    "GENERATION_SCHEMA",
    "IMAGE_STRUCT",
    "MESSAGE_STRUCT",
    "PROBLEM_SCHEMA",
    "PROBLEM_TYPES",
    "QUARANTINE_SCHEMA",
    "QUESTION_TYPES",
    "RL_SCHEMA",
    "hf_features",
    "validate_problem",
    "validate_table",
]
