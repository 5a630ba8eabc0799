"""The benchmark readers on the real files and on broken copies: LogicVista (option labels drawn in the figure, a few
all-or-nothing multi-letter golds, one empty row) and MATH-V testmini. A bad row is skipped with its reason and
counted in the reports; it never stops the evaluation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.decontam.benchmarks import read_items
from pipeline.evaluate.benchmarks import (
    LOGICVISTA,
    MATHVISION_TESTMINI,
    BenchmarkError,
    judge_labels,
    open_benchmark,
    option_labels,
)
from pipeline.evaluate.stage import EvalModel, EvaluateConfig, run_evaluation
from pipeline.generate.base import SamplingParams
from pipeline.models.tiny import build_tiny_text_lm, train_tokenizer


@pytest.fixture(scope="module")
def logicvista(data_root) -> dict:
    return json.loads((data_root / LOGICVISTA.path).read_text(encoding="utf-8"))


def test_logicvista_reads_every_row_and_skips_the_empty_one(data_root, logicvista):
    benchmark = open_benchmark(LOGICVISTA, data_root)
    problems, skipped = benchmark.read(0, benchmark.count())
    empty = [key for key, row in logicvista.items() if not row["answer"].strip()]
    assert benchmark.count() == len(logicvista) and len(problems) == len(logicvista) - len(empty)
    assert [(row.source_id, row.reason) for row in skipped] == [(key, "missing_field") for key in empty]
    by_id = {p["source_id"]: p for p in problems}
    several = {key: row["answer"] for key, row in logicvista.items() if "," in row["answer"]}
    assert several and all(by_id[key]["answer_labels"] == list(option_labels(answer)) for key, answer in several.items())
    assert all(len(p["images"]) == 1 and p["images"][0]["bytes"][:4] == b"\x89PNG" for p in problems)
    skills = {"/".join(row["skill"]) for key, row in logicvista.items() if key not in empty}
    assert {p["subject"] for p in problems} == skills


def test_option_labels_and_all_or_nothing_judging():
    assert option_labels("B, D") == ("B", "D") and option_labels("3") == ("3",) and option_labels("D,B") == ("B", "D")
    for unknown in ("AB", "B, x", "none", "?"):
        with pytest.raises(ValueError, match="not an option label"):
            option_labels(unknown)
    assert judge_labels("(B) and (D)", ["B", "D"]) == (True, "choice")
    assert judge_labels("D, B", ["B", "D"]) == (True, "choice")
    assert judge_labels("B", ["B", "D"]) == (False, "mismatch")  # one of two correct letters scores nothing
    assert judge_labels("Option C", ["C"]) == (True, "choice") and judge_labels("\\text{C}", ["C"]) == (True, "choice")
    assert judge_labels("the cube", ["C"]) == (False, "not_an_option") and judge_labels(None, ["C"]) == (False, "no_answer")


@pytest.fixture
def broken_logicvista(tmp_path, data_root, logicvista) -> tuple[Path, dict[str, str]]:
    """A LogicVista copy with one bad row of each kind, and the reason each must be skipped with."""
    keys = list(logicvista)[:8]
    rows = {key: dict(logicvista[key]) for key in keys}
    (tmp_path / "images").mkdir()
    for row in rows.values():
        shutil.copy(data_root / "logicvista" / "images" / row["imagename"], tmp_path / "images" / row["imagename"])
    expected = {
        keys[0]: "invalid_record",
        keys[1]: "image_missing",
        keys[2]: "invalid_answer",
        keys[3]: "missing_field",
        keys[4]: "image_undecodable",
        keys[5]: "invalid_field",
    }
    rows[keys[0]] = "a row that is not an object"
    rows[keys[1]]["imagename"] = "absent.png"
    rows[keys[2]]["answer"] = "B, Q?"  # an answer letter no option has
    rows[keys[3]]["answer"] = ""
    (tmp_path / "images" / rows[keys[4]]["imagename"]).write_bytes(b"not an image")
    rows[keys[5]]["question"] = 17
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path, expected


def test_broken_logicvista_rows_are_skipped_with_their_reasons(broken_logicvista, data_root):
    path, expected = broken_logicvista
    benchmark = open_benchmark(LOGICVISTA.model_copy(update={"path": str(path)}), data_root)
    problems, skipped = benchmark.read(0, benchmark.count())
    assert {row.source_id: row.reason for row in skipped} == expected
    assert len(problems) == benchmark.count() - len(expected) and all(p["images"] for p in problems)


def test_broken_mathvision_rows_are_skipped_with_their_reasons(tmp_path, data_root):
    lines = (data_root / MATHVISION_TESTMINI.path).read_text(encoding="utf-8").splitlines()[:6]
    rows = [json.loads(line) for line in lines]
    (tmp_path / "images").mkdir()
    for row in rows:
        shutil.copy(data_root / "mathvision" / row["image"], tmp_path / row["image"])
    lettered = next(i for i, row in enumerate(rows) if row["options"])
    rows[lettered]["answer"] = "Z"  # no such option
    missing = next(i for i in range(len(rows)) if i != lettered)
    (tmp_path / rows[missing]["image"]).unlink()
    text = [json.dumps(row) for row in rows]
    text[-1] = text[-1][: len(text[-1]) // 2]  # a line cut in the middle
    (tmp_path / "testmini.jsonl").write_text("\n".join(text) + "\n", encoding="utf-8")
    benchmark = open_benchmark(MATHVISION_TESTMINI.model_copy(update={"path": str(tmp_path / "testmini.jsonl")}), data_root)
    problems, skipped = benchmark.read(0, benchmark.count())
    reasons = {row.source_id: row.reason for row in skipped}
    assert reasons == {str(rows[lettered]["id"]): "invalid_field", str(rows[missing]["id"]): "image_missing", "5": "invalid_json"}
    assert len(problems) == len(rows) - len(reasons)


def test_an_unreadable_benchmark_file_is_a_named_error(tmp_path, data_root):
    (tmp_path / "dataset.json").write_text("[1, 2", encoding="utf-8")
    with pytest.raises(BenchmarkError, match="cannot be read"):
        open_benchmark(LOGICVISTA.model_copy(update={"path": str(tmp_path / "dataset.json")}), data_root)
    with pytest.raises(BenchmarkError, match="no file"):
        open_benchmark(LOGICVISTA.model_copy(update={"path": str(tmp_path / "absent.json")}), data_root)


def test_evaluation_counts_skipped_rows_and_scores_the_rest(tmp_path, broken_logicvista, data_root):
    path, expected = broken_logicvista
    model = build_tiny_text_lm(tmp_path / "text", tokenizer=train_tokenizer(vocab_size=1024, vision=False))
    config = EvaluateConfig(
        benchmarks=[LOGICVISTA.model_copy(update={"path": str(path)})],
        models=[EvalModel(name="base", path=str(model))],
        sampling=SamplingParams(temperature=0.0, max_tokens=4, seed=0),
        shard_size=3,  # the bad rows fall in several shards
    )
    report = run_evaluation(config, tmp_path / "run", data_root)["logicvista"]["base"]
    rows = len(json.loads(path.read_text()))
    assert report["counts"]["problems"] == rows - len(expected) and report["counts"]["failed"] == 0
    document = json.loads((tmp_path / "run" / "reports" / "logicvista" / "report.json").read_text())
    reasons = sorted(expected.values())
    assert document["rows_read"] == rows and document["rows_skipped"] == {reason: reasons.count(reason) for reason in reasons}
    summary = (tmp_path / "run" / "reports" / "comparison.md").read_text()
    assert f"| {rows} rows, {len(expected)} skipped (" in summary and "image_missing 1" in summary


def test_logicvista_is_a_decontamination_benchmark_of_the_default_run(data_root, logicvista):
    config = load_config()
    benchmark = next(b for b in config.decontam.benchmarks if b.name == "logicvista")
    assert LOGICVISTA.name in {b.name for b in EvaluateConfig().benchmarks}  # and an evaluation benchmark
    items, skipped = read_items(benchmark, data_root, phash_size=8)
    assert len(items) + sum(skipped.values()) == len(logicvista) and skipped == {"missing_field": 1}
    assert all(len(item.image_phashes) == 1 for item in items)  # every figure found and hashed
