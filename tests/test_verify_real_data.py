"""Agreement with the datasets' own labels on a slice of the real recorded responses (shared/data)."""

import os
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.bench_verify import label_error_evidence
from pipeline.verify import Verifier, VerifierConfig
from pipeline.verify.labelled import load_gsm8k, load_mathvision, load_mathvista, load_tabmwp

DATA_ROOT = Path(os.environ.get("VERIFY_DATA_ROOT", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
SLICE = 400  # responses per source: the whole file takes ~1 s more, the slice keeps this test quick
THRESHOLDS = {"tabmwp": 0.99, "gsm8k": 0.99, "mathvista": 0.97, "mathvision": 0.985}

pytestmark = pytest.mark.skipif(not (DATA_ROOT / "README.md").exists(), reason=f"no shared data at {DATA_ROOT}")


@pytest.fixture(scope="module")
def judged():
    rows = [
        *list(load_tabmwp(DATA_ROOT))[:SLICE],
        *list(load_mathvista(DATA_ROOT))[:SLICE],
        *list(load_gsm8k(DATA_ROOT))[:SLICE],
        *list(load_mathvision(DATA_ROOT))[:SLICE],  # the first setting, Gemini-Pro with CoT
    ]
    with Verifier(VerifierConfig(workers=2)) as verifier:
        return rows, verifier.judge_many([row.item for row in rows])


def test_agreement_with_the_official_labels(judged):
    rows, verdicts = judged
    judged_rows, agreeing = Counter(), Counter()
    for row, verdict in zip(rows, verdicts):
        if label_error_evidence(row, verdict) is None:  # set aside labels shown wrong by their own extraction
            source = row.source.split("/")[0]
            judged_rows[source] += 1
            agreeing[source] += verdict.correct == row.label
    for source, threshold in THRESHOLDS.items():
        assert agreeing[source] / judged_rows[source] >= threshold, (source, agreeing[source], judged_rows[source])


def test_label_errors_stay_a_small_documented_minority(judged):
    rows, verdicts = judged
    errors = Counter(row.source.split("/")[0] for row, v in zip(rows, verdicts) if label_error_evidence(row, v))
    assert errors["gsm8k"] == 0
    assert errors["tabmwp"] <= 0.05 * SLICE and errors["mathvista"] <= 0.15 * SLICE and errors["mathvision"] <= 0.05 * SLICE


def test_real_responses_pass_the_default_quality_gates(judged):
    from pipeline.verify import check_cot_quality

    rows, _ = judged
    results = Counter(check_cot_quality(row.item.text).reason for row in rows if row.item.text.strip())
    assert results["ok"] / sum(results.values()) >= 0.97, results
