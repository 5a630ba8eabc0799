"""Load the published RL set and check that TRL's GRPOTrainer can train on it as is."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import datasets

from pipeline.io import stable_hash
from pipeline.paths import cache_dir
from schemas import RL_SCHEMA

PROMPT_ROLES = ("system", "user")


class RLDatasetError(ValueError):
    """The RL set is not TRL-ready; the message lists what is wrong (first few rows per problem)."""


@dataclass
class RLDatasetReport:
    rows: int
    rows_with_images: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def load_rl_dataset(folder: str | Path) -> datasets.Dataset:
    """The RL set as published: a folder of parquet shards (`data/train-*.parquet`), prepared into a cache keyed by
    its files (path, size, mtime), so no other set's cache can answer for it: once, in the test suite, `datasets`'
    shared cache answered for another run's `datasets/rl` (a cause not reproduced in isolation)."""
    files = sorted((Path(folder) / "data").glob("*.parquet"))
    key = stable_hash([[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files])
    return datasets.load_dataset(str(folder), split="train", cache_dir=str(cache_dir() / "hf-datasets" / key))


def _prompt_problem(prompt) -> str | None:
    if not prompt:
        return "empty prompt"
    roles = [message.get("role") for message in prompt]
    if any(role not in PROMPT_ROLES for role in roles) or roles[-1] != "user":
        return f"prompt roles {roles}: expected system/user messages ending with the user"
    if any(not isinstance(message.get("content"), str) or not message["content"].strip() for message in prompt):
        return "a prompt message has no text"
    return None


def validate_rl_dataset(dataset: datasets.Dataset, max_examples: int = 3) -> RLDatasetReport:
    """Columns of RL_SCHEMA, conversational system/user prompts, a gold answer, images that decode."""
    missing = [name for name in RL_SCHEMA.names if name not in dataset.column_names]
    report = RLDatasetReport(rows=len(dataset), rows_with_images=0)
    if missing:
        report.problems.append(f"missing columns: {missing}")
        return report
    if len(dataset) == 0:
        report.problems.append("no rows")
    if len(set(dataset["problem_id"])) != len(dataset):
        report.problems.append("problem_id is not unique (VAS keys its scores by it)")
    examples: dict[str, list[str]] = {}
    checked = dataset.select_columns(["problem_id", "prompt", "answer", "images"])
    for row in checked:
        found = [_prompt_problem(row["prompt"])]
        if not isinstance(row["answer"], str) or not row["answer"].strip():
            found.append("no gold answer")
        try:  # the Image feature decodes lazily on access; load() forces the pixels
            for image in row["images"] or []:
                image.load()
        except Exception as error:  # any decoder failure is a bad row, whatever PIL raises
            found.append(f"image does not decode: {type(error).__name__}")
        report.rows_with_images += bool(row["images"])
        for problem in filter(None, found):
            examples.setdefault(problem, []).append(row["problem_id"])
    for problem, ids in examples.items():
        report.problems.append(f"{problem}: {len(ids)} rows, e.g. {ids[:max_examples]}")
    return report


def load_validated_rl_dataset(folder: str | Path) -> tuple[datasets.Dataset, RLDatasetReport]:
    dataset = load_rl_dataset(folder)
    report = validate_rl_dataset(dataset)
    if not report.ok:
        raise RLDatasetError(f"{folder} is not TRL-ready: " + "; ".join(report.problems))
    return dataset, report
