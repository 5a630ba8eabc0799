"""Fast subset of benchmarks/bench_eval.py: the 9 recorded MATH-V settings through the evaluate stage agree with
the benchmark's own per-item labels, and every disagreement gets an evidence-based class."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.bench_eval import (
    BENCHMARK,
    OVERALL_TOLERANCE,
    SETTINGS,
    compare,
    disagreement_class,
    evaluation_config,
    load_official,
)
from pipeline.evaluate.stage import EvaluateStage, run_evaluation
from pipeline.verify import judge_response


def test_recorded_settings_match_the_official_labels_on_a_subset(tmp_path, data_root):
    config = evaluation_config(limit=300)
    reports = run_evaluation(config, tmp_path, data_root)[BENCHMARK]
    assert set(reports) == set(SETTINGS)
    for report in reports.values():
        assert report["counts"]["problems"] == report["counts"]["samples"] == 300 and report["counts"]["failed"] == 0
    findings, unexplained = compare(data_root, tmp_path, EvaluateStage(config, data_root), reports, full=False)
    assert unexplained == []
    overall = [f for f in findings if f["scope"] == "overall"]
    assert len(overall) == 9
    for finding in overall:
        assert abs(finding["gap"]) <= OVERALL_TOLERANCE or finding["classes"], finding["setting"]
        assert abs(finding["gap"] - finding["explained"]) < 1e-6  # the gap is exactly its signed disagreements


def _problem(root: Path, problem_id: str) -> dict:
    for line in (root / "mathvision" / "test.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["id"] == problem_id:
            return row
    raise KeyError(problem_id)


def test_disagreement_classes_on_real_responses(data_root):
    official, _ = load_official(data_root, "Qwen-VL-Max-CoT")
    expected = {
        "888": "official: the answer names the gold option by its text",  # '12\mathrm{~cm}' vs option C
        "2741": "official: the number is followed by units or words",  # '120votescastalltogether'
    }
    for problem_id, label in expected.items():
        problem = _problem(data_root, problem_id)
        options = problem["options"]
        verdict = judge_response(
            official[problem_id]["response"], gold=problem["answer"], choices=options or None,
            question_type="multi_choice" if options else "free_form", answer_type="text" if options else "integer",
        )
        assert verdict.correct != official[problem_id]["correct"]
        ours = {"correct": verdict.correct, "extracted": verdict.extracted}
        item = {**problem, "response": official[problem_id]["response"]}
        assert disagreement_class(item, ours, official[problem_id]).startswith(label), problem_id
