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
    expected = {
        ("Qwen-VL-Max-CoT", "888"): "official: the answer names the gold option by its text",  # '12\mathrm{~cm}' vs option C
        ("Qwen-VL-Max-CoT", "2741"): "official: the number is followed by units or words",  # '120votescastalltogether'
        # "The answer is \textbf{E}.": the matcher read 'bfe'; the letter is right, not a verifier false positive
        ("InternLM-XComposer2-VL", "21"): "official: the gold letter written with brackets/markup",
        # '\frac{125}{8}\mathrm{~cm}^{2}': the gold option with its unit, not a longer expression
        ("Gemini-Pro-CoT", "1386"): "official: the final answer is the gold option in another form",
    }
    for (setting, problem_id), label in expected.items():
        official, _ = load_official(data_root, setting)
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


def test_a_numeric_option_inside_a_longer_expression_is_classed_as_ours():
    item = {"options": ["1", "2", "3", "4", "5"], "answer": "B", "response": "The answer is $\\boxed{2 \\sqrt{3}}$."}
    ours = {"correct": True, "extracted": "2"}
    label = disagreement_class(item, ours, {"model_answer": "2\\sqrt{3}", "correct": False})
    assert label.startswith("ours: a numeric option matched inside a longer final expression")
    label = disagreement_class(item, ours, {"model_answer": "2\\mathrm{~cm}", "correct": False})
    assert not label.startswith("ours:")  # the option with its unit
