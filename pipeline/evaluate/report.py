"""Accuracy with confidence intervals, overall and per subject / level, from the judged evaluation rows.

Accuracy is the mean over problems of each problem's share of correct samples (a failed generation counts as
wrong: it is an answer the model did not give). The interval is a percentile bootstrap over problems, so the
n samples of one problem move together (they are not independent draws); with one sample per problem it is the
usual binomial bootstrap. Pure functions over numpy arrays; the report, plot and table are written from them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

INTERVAL_METHOD = "percentile bootstrap over problems"
REPORT_FILE, PLOT_FILE, TABLE_FILE = "report.json", "accuracy.png", "comparison.md"


@dataclass(frozen=True)
class Accuracy:
    problems: int
    samples: int
    correct: int
    accuracy: float  # percent
    ci_low: float
    ci_high: float


def bootstrap_interval(per_problem: np.ndarray, confidence: float, resamples: int, seed: int) -> tuple[float, float]:
    """Percentile bootstrap of the mean of per-problem scores (fractions in [0, 1])."""
    if len(per_problem) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = per_problem[rng.integers(0, len(per_problem), size=(resamples, len(per_problem)))].mean(axis=1)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def accuracy_of(correct: np.ndarray, problem_index: np.ndarray, confidence: float, resamples: int, seed: int) -> Accuracy:
    """`correct[i]` judges sample i, which answers problem `problem_index[i]` (any integer labels)."""
    labels, inverse = np.unique(problem_index, return_inverse=True)
    per_problem = np.bincount(inverse, weights=correct.astype(float)) / np.bincount(inverse)
    low, high = bootstrap_interval(per_problem, confidence, resamples, seed)
    mean = float(per_problem.mean()) if len(labels) else float("nan")
    return Accuracy(len(labels), int(len(correct)), int(correct.sum()), 100 * mean, 100 * low, 100 * high)


def grouped_accuracy(
    correct: np.ndarray, problem_index: np.ndarray, groups: Sequence | np.ndarray, confidence: float, resamples: int, seed: int
) -> dict[str, Accuracy]:
    group_names = np.asarray([str(g) for g in groups])
    return {
        name: accuracy_of(correct[group_names == name], problem_index[group_names == name], confidence, resamples, seed)
        for name in sorted(set(group_names.tolist()), key=_natural)
    }


def _natural(name: str):
    return (0, int(name)) if name.isdigit() else (1, name)


def model_report(rows: Mapping[str, np.ndarray], confidence: float, resamples: int, seed: int) -> dict:
    """rows: columns `correct`, `problem`, `subject`, `level`, `failed`, `images_dropped` of one model's samples."""
    correct, problem = rows["correct"].astype(bool), rows["problem"]
    return {
        "overall": asdict(accuracy_of(correct, problem, confidence, resamples, seed)),
        "by_subject": {k: asdict(v) for k, v in grouped_accuracy(correct, problem, rows["subject"], confidence, resamples, seed).items()},
        "by_level": {k: asdict(v) for k, v in grouped_accuracy(correct, problem, rows["level"], confidence, resamples, seed).items()},
        "counts": {
            "problems": int(len(np.unique(problem))),
            "samples": int(len(correct)),
            "correct": int(correct.sum()),
            "wrong": int((~correct & ~rows["failed"].astype(bool)).sum()),
            "failed": int(rows["failed"].astype(bool).sum()),
            "images_dropped": int(rows["images_dropped"].astype(bool).sum()),
        },
    }


def comparison_table(reports: Mapping[str, dict]) -> str:
    """Markdown: one row per model (checkpoint), overall then per level (level 0: none given), accuracy [CI]."""
    levels = sorted({level for report in reports.values() for level in report["by_level"] if level != "0"}, key=_natural)
    rows = [["model", "problems", "overall", *(f"level {level}" for level in levels)], ["---"] * (3 + len(levels))]
    for name, report in reports.items():
        by_level = [_cell(report["by_level"][lv]) if lv in report["by_level"] else "-" for lv in levels]
        rows.append([name, str(report["overall"]["problems"]), _cell(report["overall"]), *by_level])
    return _markdown(rows)


def _markdown(rows: list[list]) -> str:
    return "".join("| " + " | ".join(map(str, row)) + " |\n" for row in rows)


def skipped_note(meta: Mapping) -> str:
    """What a benchmark's scores leave out: rows beyond a limit, and rows that could not be evaluated as published."""
    read, skipped = meta["rows_read"], meta["rows_skipped"]
    note = f"first {read} of {meta['rows_in_file']} rows" if read < meta["rows_in_file"] else f"{read} rows"
    if not skipped:
        return note + ", all evaluated"
    reasons = ", ".join(f"{reason} {count}" for reason, count in skipped.items())
    return f"{note}, {sum(skipped.values())} skipped ({reasons})"


def summary_table(documents: Mapping[str, Mapping[str, dict]], metas: Mapping[str, Mapping]) -> str:
    """Markdown over all benchmarks: one row per benchmark and checkpoint, as the paper's table reads."""
    rows = [
        ["benchmark", "model", "problems", "samples", "accuracy % [95% CI]", "failed generations", "benchmark rows"],
        ["---", "---", "---:", "---:", "---", "---:", "---"],
    ]
    for benchmark, reports in documents.items():
        for model, report in reports.items():
            counts = report["counts"]
            rows.append([benchmark, model, counts["problems"], counts["samples"], _cell(report["overall"]), counts["failed"],
                         skipped_note(metas[benchmark])])
    return _markdown(rows)


def write_summary(out_dir: Path, documents: Mapping[str, Mapping[str, dict]], metas: Mapping[str, Mapping]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / TABLE_FILE
    path.write_text("# Evaluation\n\n" + summary_table(documents, metas), encoding="utf-8")
    return path


def _cell(accuracy: Mapping) -> str:
    return f"{accuracy['accuracy']:.1f} [{accuracy['ci_low']:.1f}, {accuracy['ci_high']:.1f}]"


def plot_by_subject(reports: Mapping[str, dict], path: Path, title: str) -> Path:
    """Grouped bars: accuracy per subject for each model, bootstrap CI as error bars; overall first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # here: configs import this package, and matplotlib takes a second
    subjects = ["overall"] + sorted({s for report in reports.values() for s in report["by_subject"]})
    width = 0.8 / max(1, len(reports))
    figure, axes = plt.subplots(figsize=(max(6, 0.6 * len(subjects) * max(1, len(reports)) ** 0.5 + 3), 4.5))
    for offset, (name, report) in enumerate(reports.items()):
        cells = [report["overall"]] + [report["by_subject"].get(s) for s in subjects[1:]]
        values = np.array([c["accuracy"] if c else np.nan for c in cells])
        low = np.array([c["accuracy"] - c["ci_low"] if c else 0 for c in cells])
        high = np.array([c["ci_high"] - c["accuracy"] if c else 0 for c in cells])
        x = np.arange(len(subjects)) + offset * width
        axes.bar(x, values, width, yerr=np.vstack([low, high]), capsize=2, label=name)
    axes.set_xticks(np.arange(len(subjects)) + width * (len(reports) - 1) / 2, subjects, rotation=60, ha="right", fontsize=7)
    axes.set_ylabel("accuracy (%)")
    axes.set_title(title)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_reports(out_dir: Path, benchmark: str, reports: Mapping[str, dict], meta: Mapping) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    document = {"benchmark": benchmark, **meta, "interval": INTERVAL_METHOD, "models": dict(reports)}
    (out_dir / REPORT_FILE).write_text(json.dumps(document, indent=2), encoding="utf-8")
    table = f"# {benchmark}\n\n{skipped_note(meta)}\n\n" + comparison_table(reports)
    (out_dir / TABLE_FILE).write_text(table, encoding="utf-8")
    plot_by_subject(reports, out_dir / PLOT_FILE, benchmark)
    return [out_dir / REPORT_FILE, out_dir / TABLE_FILE, out_dir / PLOT_FILE]


def columns_by_model(table_rows: Iterable[Mapping]) -> dict[str, dict[str, np.ndarray]]:
    """Row dicts -> per-model numpy columns for model_report."""
    by_model: dict[str, dict[str, list]] = {}
    for row in table_rows:
        columns = by_model.setdefault(row["model"], {k: [] for k in ("correct", "problem", "subject", "level", "failed", "images_dropped")})
        columns["correct"].append(bool(row["correct"]))
        columns["problem"].append(row["problem_id"])
        columns["subject"].append(row["subject"])
        columns["level"].append(row["level"])
        columns["failed"].append(row["error"] is not None)
        columns["images_dropped"].append(bool(row["images_dropped"]))
    return {model: {k: np.asarray(v) for k, v in columns.items()} for model, columns in by_model.items()}
