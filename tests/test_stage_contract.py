"""The shared stage contract: stats the runner fills, summaries, setup/teardown; judging generation rows; publishing."""

from __future__ import annotations

import pickle
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import datasets
import pyarrow as pa
import pytest

from pipeline.io import QuarantinedRow, StageDir
from pipeline.publish import PublishConfig, publish_dataset
from pipeline.publish.dataset import published_rows
from pipeline.stage import ShardResult, Stage, release_stage, run_shard, summarise_stage
from pipeline.verify.judge import RowJudge, VerifyStageConfig, verifier_resources
from problem_rows import problem_row
from schemas import GENERATION_SCHEMA, PROBLEM_SCHEMA, RL_SCHEMA


class KeepEven(Stage):
    name = "even"
    inputs = ("numbers",)
    output_schema = pa.schema([("x", pa.int64())])

    def process(self, shard, inputs):
        values = inputs["numbers"].column("x").to_pylist()
        odd = [QuarantinedRow("numbers", str(v), "odd") for v in values if v % 2]
        stats = Counter(dropped_negative=sum(v < 0 for v in values))
        kept = [v for v in values if v % 2 == 0 and v >= 0]
        return ShardResult(pa.table({"x": pa.array(kept, pa.int64())}), odd, stats)


def test_the_runner_fills_rows_in_rows_out_and_quarantine_reasons_and_summaries_group_them(tmp_path):
    for shard, values in {"a": [1, 2, 3, 4], "b": [-2, 6]}.items():
        StageDir(tmp_path, "numbers").write(shard, pa.table({"x": pa.array(values, pa.int64())}), "in", {})
        marker = run_shard(KeepEven(None), tmp_path, shard)
    assert marker.stats["rows_in"] == 2 and marker.stats["rows_out"] == 1 and marker.stats["dropped_negative"] == 1
    summary = summarise_stage(tmp_path, "even", ["a", "b"])
    assert summary["counts"] == {"rows_in": 6, "rows_out": 3, "dropped_negative": 1, "quarantined_odd": 2}
    assert summary["dropped"] == {"dropped_negative": 1} and summary["quarantined"] == {"quarantined_odd": 2}
    assert summary["skipped"] == {}
    assert (tmp_path / "even" / "stats.json").exists()
    with pytest.raises(FileNotFoundError, match="even/c has no completion marker"):
        summarise_stage(tmp_path, "even", ["a", "c"])


class Engine:
    closed = 0

    def close(self):
        Engine.closed += 1


class Squares(Stage):
    """A stage with a worker resource: its engine squares the numbers."""

    name = "squares"
    inputs = ("numbers",)
    output_schema = pa.schema([("x", pa.int64())])
    setups: list[int] = []

    def setup(self):
        Squares.setups.append(threading.get_ident())
        return {"engine": Engine(), "square": lambda v: v * v}

    def process(self, shard, inputs):
        square = self.resources["square"]
        return ShardResult(pa.table({"x": pa.array([square(v) for v in inputs["numbers"].column("x").to_pylist()], pa.int64())}))


def test_a_stage_sets_up_once_per_process_for_all_its_shard_threads_and_tears_down_on_release(tmp_path):
    shards = [f"s{i}" for i in range(8)]
    for i, shard in enumerate(shards):
        StageDir(tmp_path, "numbers").write(shard, pa.table({"x": pa.array([i], pa.int64())}), "in", {})
    stage, Squares.setups, Engine.closed = Squares(None), [], 0
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda shard: run_shard(stage, tmp_path, shard), shards))
    assert len(Squares.setups) == 1 and Engine.closed == 0
    assert [StageDir(tmp_path, "squares").read(s).column("x").to_pylist() for s in shards] == [[i * i] for i in range(8)]
    assert release_stage(stage.worker_key)["released"] == ["engine", "square"] and Engine.closed == 1
    assert stage.release() == []  # released once; nothing left
    assert pickle.loads(pickle.dumps(stage)).worker_key == stage.worker_key  # a Dask/Ray task's copy finds the same resources
    run_shard(stage, tmp_path, "s0")  # finished: skipped without building anything
    assert len(Squares.setups) == 1
    StageDir(tmp_path, "numbers").write("s8", pa.table({"x": pa.array([8], pa.int64())}), "in", {})
    run_shard(stage, tmp_path, "s8")  # new work after a release: set up afresh
    assert len(Squares.setups) == 2 and stage.release() == ["engine", "square"] and Engine.closed == 2


def generation(problem_id, text, *, error=None, finish_reason="stop", sample=0):
    row = {name: None for name in GENERATION_SCHEMA.names}
    prompt = "[]"
    return row | dict(request_id=f"{problem_id}-{sample}", problem_id=problem_id, teacher="t", sample_index=sample,
                      prompt=prompt, raw_text=text, finish_reason=finish_reason, error=error)


def test_the_row_judge_judges_answered_rows_and_passes_failed_generations_through():
    seven = problem_row("What is 3 + 4?", "7") | {"answer_type": "integer"}
    choice = problem_row("Which is larger?", "5cm", choices=["3cm", "5cm"])
    problems = pa.Table.from_pylist([seven, choice], schema=PROBLEM_SCHEMA)
    rows = [
        generation(seven["problem_id"], "3 plus 4 is 7. The answer is 7.", sample=0),
        generation(seven["problem_id"], "The answer is 8.", sample=1),
        generation(seven["problem_id"], "Let me think step by step about", finish_reason="length", sample=2),
        generation(choice["problem_id"], "Comparing them, the answer is (B).", sample=0),
        generation(choice["problem_id"], None, error="http_500: server error", sample=1),
    ]
    rows = pa.Table.from_pylist(rows, schema=GENERATION_SCHEMA).to_pylist()  # every column, as the stage builds them
    resources = verifier_resources(VerifyStageConfig(workers=1))
    stats = Counter()
    try:
        RowJudge(problems, resources["verifier"], VerifyStageConfig(workers=1)).judge(rows, stats)
    finally:
        resources["verifier"].close()
    out = rows
    assert [r["correct"] for r in out] == [True, False, False, True, None]
    assert [r["extracted_answer"] for r in out[:2]] == ["7", "8"]
    assert out[2]["quality_ok"] is False and out[2]["quality_reason"] == "truncated"
    assert out[4]["verdict_reason"] is None and out[4]["error"] == "http_500: server error"
    assert stats["skipped_failed_generation"] == 1 and stats["correct"] == 2
    assert sum(v for k, v in stats.items() if k.startswith("verdict_")) == 4


def rl_row(i, source, pass_rate):
    return {
        "problem_id": f"p{i}", "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": f"q{i}"}],
        "images": [], "answer": "1", "answer_type": "integer", "question_type": "free_form", "choices": None,
        "precision": None, "unit": None, "pass_rate": pass_rate, "num_rollouts": 4, "source": source, "domain": "d",
    }


def test_publishing_writes_a_loadable_folder_whose_card_reads_the_shared_stats_keys(tmp_path):
    rl = StageDir(tmp_path, "rl")
    rl.write("a", pa.Table.from_pylist([rl_row(0, "x", 0.25), rl_row(1, "y", 0.5)], schema=RL_SCHEMA), "h", {})
    rl.write("b", RL_SCHEMA.empty_table(), "h", {})  # an empty shard makes no file
    rl.write("c", pa.Table.from_pylist([rl_row(2, "x", 0.75)], schema=RL_SCHEMA), "h", {})
    lineage = [
        {"stage": "problems", "shards": 3, "counts": {"rows_in": 5, "rows_out": 4}, "dropped": {},
         "skipped": {}, "quarantined": {"quarantined_invalid_json": 1}},
        {"stage": "rl", "shards": 3, "counts": {"rows_in": 4, "rows_out": 3}, "dropped": {"dropped_too_few_rollouts": 1},
         "skipped": {}, "quarantined": {}, "composition": {"problem_cluster": {"0": 2, "1": 1}}},
    ]
    config = PublishConfig()
    licenses = {"x": "MIT", "y": "MIT"}
    folder = publish_dataset(tmp_path, "rl", RL_SCHEMA, config, lineage, ["a", "b", "c"], licenses)
    loaded = datasets.load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert loaded["problem_id"] == ["p0", "p1", "p2"] and published_rows(folder) == 3
    # the two non-empty shards pack into one file under publish.max_file_bytes
    assert sorted(p.name for p in (folder / "data").iterdir()) == ["train-00000-of-00001.parquet"]
    card = (folder / "README.md").read_text()
    assert "3 prompts in 1 Parquet files" in card
    assert "| problems | 3 | 5 | 4 | 0 | 0 | 1 |" in card and "| rl | 3 | 4 | 3 | 1 | 0 | 0 |" in card
    assert "- `quarantined_invalid_json`: 1" in card and "- `dropped_too_few_rollouts`: 1" in card
    assert "| x | 2 |" in card and "| y | 1 |" in card
    assert {"domains.png", "sources.png", "difficulty.png", "clusters.png"} <= {p.name for p in folder.iterdir()}
    first = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert "license: mit" in card and "| x | 2 | MIT |" in card
    again = publish_dataset(tmp_path, "rl", RL_SCHEMA, config, lineage, ["a", "b", "c"], licenses)
    assert {p.relative_to(again): p.read_bytes() for p in again.rglob("*") if p.is_file()} == first
