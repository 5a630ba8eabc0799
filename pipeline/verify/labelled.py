"""Recorded model responses with independent correctness labels (shared/data), as VerifyItems.

Used to measure the verifier's agreement with the datasets' own judgements (benchmark, tests).
Files are read as their authors published them; source-native types map to the canonical vocab.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.verify.verifier import VerifyItem

_TABMWP_ANSWER_TYPES = {"integer_number": "integer", "decimal_number": "float"}  # *_text -> text
_TABMWP_QUESTION_TYPES = {"multi_choice": "multi_choice", "free_text": "free_form"}
MATHVISTA_FILES = ("output_bard.json", "output_gpt4_2shot_solution.json")
GSM8K_MODELS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")
_INTEGER = re.compile(r"-?\d+")
_DECIMAL = re.compile(r"-?\d*\.\d+")


@dataclass(frozen=True)
class LabelledResponse:
    source: str  # "tabmwp", "mathvista/output_bard", "gsm8k/6b_finetuning", ...
    id: str
    item: VerifyItem
    label: bool  # the dataset's own verdict
    official_prediction: str | None  # the dataset's own extracted answer, where it records one


def load_tabmwp(root: Path) -> Iterator[LabelledResponse]:
    problems = json.loads((root / "tabmwp" / "problems.json").read_text())
    outputs = json.loads((root / "tabmwp" / "gpt3_cot_outputs.json").read_text())
    for pid, record in outputs.items():
        problem = problems[pid]
        item = VerifyItem(
            text=record["output"].replace("\\n", "\n"),  # the GPT-3 outputs were stored with escaped newlines
            gold=problem["answer"],
            answer_type=_TABMWP_ANSWER_TYPES.get(problem["ans_type"], "text"),
            question_type=_TABMWP_QUESTION_TYPES[problem["ques_type"]],
            choices=problem["choices"],
            unit=problem["unit"],
        )
        yield LabelledResponse("tabmwp", pid, item, bool(record["true_false"]), record["prediction"])


def load_mathvista(root: Path) -> Iterator[LabelledResponse]:
    for name in MATHVISTA_FILES:
        records = json.loads((root / "mathvista" / name).read_text())
        for pid, record in records.items():
            precision = record["precision"]
            item = VerifyItem(
                text=record["response"] or "",
                gold=record["answer"],
                answer_type=record["answer_type"],
                question_type=record["question_type"],
                choices=record["choices"],
                precision=None if precision is None or math.isnan(precision) else int(precision),
                unit=record["unit"],
            )
            source = f"mathvista/{name.removesuffix('.json')}"
            yield LabelledResponse(source, pid, item, bool(record["true_false"]), record["extraction"])


def gsm8k_gold(solution: str) -> str:
    """The final answer of a GSM8K reference solution: after "####" (test.jsonl) or "A:" (examples)."""
    match = re.search(r"(?:####|^A:)\s*(.+)$", solution.strip(), re.MULTILINE)
    if match is None:
        raise ValueError(f"no final answer in GSM8K solution: {solution[-80:]!r}")
    return match[1].strip().replace(",", "")


def load_gsm8k(root: Path) -> Iterator[LabelledResponse]:
    lines = (root / "gsm8k" / "example_model_solutions.jsonl").read_text().splitlines()
    for number, line in enumerate(lines):
        record = json.loads(line)
        gold = gsm8k_gold(record["ground_truth"])
        answer_type = "integer" if re.fullmatch(r"-?\d+", gold) else "float"
        for model in GSM8K_MODELS:
            solution = record[model]
            item = VerifyItem(text=solution["solution"], gold=gold, answer_type=answer_type)
            yield LabelledResponse(f"gsm8k/{model}", str(number), item, bool(solution["is_correct"]), None)


def mathvision_answer_type(answer: str) -> str:
    answer = answer.strip()
    if _INTEGER.fullmatch(answer):
        return "integer"
    return "float" if _DECIMAL.fullmatch(answer) else "expression"


def load_mathvision(root: Path) -> Iterator[LabelledResponse]:
    """MATH-V: every `outputs/<setting>.jsonl` against `test.jsonl`; multiple choice when the problem has
    options (their texts, or just the letters A-E where the options are drawn), the gold being a letter."""
    folder = root / "mathvision"
    problems = {row["id"]: row for row in map(json.loads, (folder / "test.jsonl").read_text().splitlines())}
    for path in sorted((folder / "outputs").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            problem = problems[record["id"]]
            options = problem["options"]
            item = VerifyItem(
                text=record["response"] or "",
                gold=problem["answer"],
                answer_type="text" if options else mathvision_answer_type(problem["answer"]),
                question_type="multi_choice" if options else "free_form",
                choices=options or None,
            )
            label = bool(record["correct"])
            yield LabelledResponse(f"mathvision/{path.stem}", record["id"], item, label, record["model_answer"])


def load_all(root: Path) -> list[LabelledResponse]:
    return [*load_tabmwp(root), *load_mathvista(root), *load_gsm8k(root), *load_mathvision(root)]
