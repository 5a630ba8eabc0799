"""Small published-layout training sets for tests, from real shared problems: TabMWP rows carry their table image,
GSM8K rows are text only, so a set can hold any mix of the two (the default RL set mixes diagrams and text)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets

from pipeline.prompts import chat_messages
from schemas import COLD_START_SCHEMA, RL_SCHEMA


def tabmwp_rl_rows(data_root: Path, count: int, skip: int = 0) -> list[dict]:
    """RL rows of the first TabMWP problems (after `skip`), each with its table image."""
    problems = json.loads((data_root / "tabmwp" / "problems.json").read_text(encoding="utf-8"))
    rows = []
    for source_id, problem in list(problems.items())[skip : skip + count]:
        png = (data_root / "tabmwp" / "tables" / f"{source_id}.png").read_bytes()
        fields = {"question": problem["question"], "choices": problem["choices"], "unit": problem["unit"], "domain": "table_math"}
        answer_type = {"integer_number": "integer", "decimal_number": "float"}.get(problem["ans_type"], "text")
        question_type = "multi_choice" if problem["ques_type"] == "multi_choice" else "free_form"
        rows.append(_rl_row(f"tabmwp-{source_id}", fields, problem["answer"], answer_type, question_type, [png], "tabmwp"))
    return rows


def gsm8k_rl_rows(data_root: Path, count: int, skip: int = 0) -> list[dict]:
    """RL rows of the first GSM8K problems (after `skip`): text only, `images` null as the published set stores it."""
    lines = (data_root / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()[skip : skip + count]
    rows = []
    for number, line in enumerate(lines, start=skip):
        problem = json.loads(line)
        fields = {"question": problem["question"], "choices": None, "unit": None, "domain": "arithmetic_word"}
        answer = problem["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        rows.append(_rl_row(f"gsm8k-{number}", fields, answer, "integer", "free_form", None, "gsm8k"))
    return rows


def _rl_row(problem_id: str, fields: dict, answer: str, answer_type: str, question_type: str, pngs, source: str) -> dict:
    return {
        "problem_id": problem_id,
        "prompt": chat_messages(fields),
        "images": [{"bytes": png, "path": None} for png in pngs] if pngs else None,
        "answer": answer,
        "answer_type": answer_type,
        "question_type": question_type,
        "choices": fields["choices"],
        "precision": None,
        "unit": fields["unit"],
        "pass_rate": 0.5,  # one right of two rollouts: VAS seeds p = 0.5 from the counts
        "num_rollouts": 2,
        "num_correct": 1,
        "source": source,
        "domain": fields["domain"],
        "problem_type": "arithmetic",
    }


def cold_start_rows(rl_rows: list[dict]) -> list[dict]:
    """Cold-start rows for the same problems: the prompt, then a teacher answer ending in the boxed gold."""
    return [
        {
            "problem_id": row["problem_id"],
            "source": row["source"],
            "domain": row["domain"],
            "problem_type": row["problem_type"],
            "teacher": "test",
            "messages": row["prompt"] + [{"role": "assistant", "content": f"<think>Read the question.</think> \\boxed{{{row['answer']}}}"}],
            "images": row["images"],
            "answer": row["answer"],
            "pass_rate": row["pass_rate"],
        }
        for row in rl_rows
    ]


def write_set(rows: list[dict], folder: Path, schema=RL_SCHEMA) -> Path:
    """`rows` as a published set: `folder/data/train-00000-of-00001.parquet`, images as `datasets` Image features."""
    features = datasets.Features.from_arrow_schema(schema)
    features["images"] = datasets.List(datasets.Image())
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(Path(folder) / "data" / "train-00000-of-00001.parquet"))
    return Path(folder)


def write_cold_start_set(rows: list[dict], folder: Path) -> Path:
    return write_set(cold_start_rows(rows), folder, COLD_START_SCHEMA)
