"""Problem shards for tests: the real shared data through ingest, and hand-made rows beside it."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from pathlib import Path

import pyarrow as pa
from PIL import Image

from pipeline.ingest.sources import SourceConfig
from pipeline.ingest.stage import IngestConfig, IngestStage, problem_id
from pipeline.io import StageDir
from pipeline.stage import run_shard
from pipeline.text import normalise_text
from schemas import PROBLEM_SCHEMA

DATA_ROOT = Path(os.environ.get("MMR_DATA_ROOT") or Path(__file__).resolve().parents[2] / "shared" / "data")
REAL_SOURCES = [
    SourceConfig(name="tabmwp", format="tabmwp", path="tabmwp/problems.json", domain="table_math"),
    SourceConfig(name="gsm8k", format="gsm8k", path="gsm8k/test.jsonl", domain="arithmetic_word"),
]


def ingest_real(run_dir: Path) -> list[str]:
    """The 1,000 TabMWP + 1,319 GSM8K real problems as problem shards (finished shards are skipped)."""
    stage = IngestStage(IngestConfig(), REAL_SOURCES, DATA_ROOT)
    shards = stage.shards()
    for shard in shards:
        run_shard(stage, run_dir, shard)
    return shards


def real_problems(tmp_path_factory) -> Path:
    """One ingested copy of the real problems per test session, shared by the test modules."""
    run = tmp_path_factory.getbasetemp() / "real_problems"
    ingest_real(run)
    return run


def copy_problems(source_run: Path, run_dir: Path) -> list[str]:
    shutil.copytree(source_run / "problems", run_dir / "problems")
    return StageDir(run_dir, "problems").done_shards()


def image(data: bytes) -> dict:
    with Image.open(io.BytesIO(data)) as decoded:
        width, height = decoded.size
    return {"bytes": data, "path": "", "sha256": hashlib.sha256(data).hexdigest(), "width": width, "height": height}


def problem_row(
    question: str,
    answer: str,
    *,
    source: str = "planted",
    source_id: str = "0",
    solution: str | None = None,
    choices: list[str] | None = None,
    images: list[dict] | None = None,
    domain: str = "test",
) -> dict:
    question = normalise_text(question)
    images = images or []
    return {
        "problem_id": problem_id(question, choices, answer, [i["sha256"] for i in images]),
        "source": source,
        "source_id": source_id,
        "domain": domain,
        "question": question,
        "images": images,
        "choices": choices,
        "answer": answer,
        "answer_type": "text",
        "question_type": "multi_choice" if choices else "free_form",
        "precision": None,
        "unit": None,
        "solution": solution,
        "metadata": "{}",
    }


def write_shard(run_dir: Path, shard: str, rows: list[dict]) -> str:
    StageDir(run_dir, "problems").write(shard, pa.Table.from_pylist(rows, schema=PROBLEM_SCHEMA), "test", {})
    return shard


def read_stage(run_dir: Path, stage: str, shards: list[str]) -> list[dict]:
    return pa.concat_tables([StageDir(run_dir, stage).read(s) for s in shards]).to_pylist()
