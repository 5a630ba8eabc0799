"""The evaluation harness against MATH-V's own table: the 9 recorded model settings through the evaluate stage.

    python benchmarks/bench_eval.py [--data-root PATH] [--limit N] [--examples 2]

Each setting's recorded responses (`mathvision/outputs/<model>.jsonl`) go through the evaluate stage with the
recorded backend and the project's verifier, on all of `test.jsonl`; the accuracies are compared with the
official `<model>_result.json`: overall within 1.5 points, per subject within 3 points where a subject has at
least 95 problems. Every larger gap is decomposed into disagreement classes between our verdict and the
benchmark's per-item `correct` (what its matcher read: `model_answer`), with examples. With `--limit` the
official figures are recomputed from the per-item labels of the subset (the table covers all 3,040).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script from anywhere, against this checkout

from pipeline.evaluate.benchmarks import BenchmarkConfig  # noqa: E402
from pipeline.evaluate.stage import STAGE_NAME, EvaluateConfig, EvaluateStage, run_evaluation  # noqa: E402
from pipeline.generate.factory import BackendConfig  # noqa: E402
from pipeline.generate.recorded import RecordingConfig  # noqa: E402
from pipeline.io import StageDir  # noqa: E402
from pipeline.paths import default_data_root  # noqa: E402

SETTINGS = (
    "Gemini-Pro", "Gemini-Pro-CoT", "Qwen-VL-Max", "Qwen-VL-Max-CoT", "InternLM-XComposer2-VL",
    "InternLM-XComposer2-VL-CoT", "LLaVA-v1.5-13B", "ShareGPT4V-13B", "SPHINX-MoE",
)
BENCHMARK = "mathvision_test"
OVERALL_TOLERANCE, SUBJECT_TOLERANCE, MIN_SUBJECT_PROBLEMS = 1.5, 3.0, 95
LETTERS = "abcde"


def evaluation_config(limit: int | None) -> EvaluateConfig:
    recordings = [
        RecordingConfig(source=BENCHMARK, format="mathvision_outputs", path=f"mathvision/outputs/{name}.jsonl", teacher=name)
        for name in SETTINGS
    ]
    return EvaluateConfig(
        benchmarks=[BenchmarkConfig(name=BENCHMARK, path="mathvision/test.jsonl", limit=limit)],
        backend=BackendConfig(kind="recorded", recordings=recordings),
        shard_size=500,
        bootstrap_resamples=1000,
    )


# --- what the benchmark's matcher read, and why it disagrees with the verifier --------------------------------

def _norm(text: str | None) -> str:
    """Comparable answer text: no TeX wrappers, units of angle/percent, spaces, braces, case."""
    text = (text or "").lower()
    text = re.sub(r"\\(?:mathrm|text|textbf|mathbf|left|right|displaystyle)", "", text)
    text = re.sub(r"\^\{?\\circ\}?|°|\\degree|degrees?|\\%|%|\\,|~|\$|\{|\}|\s", "", text)
    return text.rstrip(".")


# What MATH-V's matcher leaves around a letter it did not read: "\\textbf{E}" -> "bfe", "\\text{(D)}" -> "{(d)}".
_LETTER_MARKUP = re.compile(r"\\?(?:textbf|mathbf|text|mathrm|bf|rm)|[{}\\()\[\]$~:.*\s]")
_UNIT_WORD = re.compile(r"[a-z]+(?:\^\d)?")
_PROSE_RUN = re.compile(r"(?<![\\a-z])[a-z]{6,}")  # words the matcher glued together (no LaTeX command)
_MATH_LEFT = re.compile(r"[\d\\+\-*/^√π×·]")


def _inside_longer_expression(gold_text: str, read: str) -> bool:
    """Whether the matcher's reading is a formula around a numeric gold option ("2\\sqrt{3}" for "2"),
    not the option with a unit or markup ("\\frac{125}{8}cm^2" for "\\frac{125}{8}"): what is left once
    the option and unit words are taken out still holds a digit or an operator, and it is no run of prose
    ("3cmintankiiand3cm": the matcher read on into the sentence)."""
    if not gold_text or not re.search(r"\d", gold_text) or gold_text not in read or read == gold_text:
        return False
    rest = read.replace(gold_text, "", 1)
    return _PROSE_RUN.search(rest) is None and _MATH_LEFT.search(_UNIT_WORD.sub("", rest)) is not None


def disagreement_class(item: dict, ours: dict, official: dict) -> str:
    """Why our verdict and the benchmark's `correct` differ on one response (evidence: its `model_answer`)."""
    options, gold = item["options"], item["answer"]
    read = official.get("model_answer") or ""
    gold_text = options[LETTERS.index(gold.lower())] if options and gold.lower() in LETTERS[: len(options)] else gold
    letters_only = options == [c.upper() for c in LETTERS[: len(options)]]
    extracted = ours["extracted"]
    if ours["correct"]:
        if options:
            boxed_letter = re.fullmatch(r"(?:\\?(?:text)?bf)?[(\[]?([a-e])[)\].:]?(.*)", read.lower())
            in_markup = _LETTER_MARKUP.sub("", read.lower()) == gold.lower() != read.lower()  # "\textbf{E}" -> "bfe"
            if boxed_letter and boxed_letter[1] == gold.lower() and boxed_letter[2] != "" or in_markup:
                return "official: the gold letter written with brackets/markup or followed by its text, not matched"
            if not letters_only and _norm(read) and _norm(read) == _norm(gold_text):
                return "official: the answer names the gold option by its text, not mapped to its letter"
            if len(set(re.findall(r"\(([A-E])\)", item["response"][-400:]))) > 1:
                return "ambiguous: the response names several options; the verifier takes one, the matcher another"
            if _inside_longer_expression(_norm(gold_text), _norm(read)) and _norm(extracted) == _norm(gold_text):
                return "ours: a numeric option matched inside a longer final expression (verifier false positive)"
            return "official: the final answer is the gold option in another form (LaTeX, wording)"
        if _norm(read).startswith(_norm(gold)) and re.fullmatch(r"[a-zπ\\().,:;'?!* ]*", _norm(read)[len(_norm(gold)):] or "x"):
            return "official: the number is followed by units or words the matcher does not strip"
        return "official: an equivalent form of the gold answer not recognised (fraction, spacing, 'answer is' tail)"
    if extracted is None:
        return "ours: no final answer found in the response (bare expression or prose)"
    if options and _norm(extracted) == _norm(gold_text):
        return "ours: the gold option written with different spacing/braces not matched (verifier miss)"
    if options and letters_only and extracted in options and read.lower() in LETTERS:
        return "ambiguous: options whose texts are letters; the letter read as an option label vs an option text"
    if options and any(_norm(read) == _norm(o) for i, o in enumerate(options) if i != LETTERS.index(gold.lower())):
        return "official: credited an answer that is another option's text (matcher error)"
    if not options and _norm(extracted) != _norm(gold):
        return "official: credited an answer not equal to the gold (matcher error)"
    return "ours: the final answer differs from the gold in form only (verifier miss)"


# --- comparison ------------------------------------------------------------------------------------------

def load_official(root: Path, name: str) -> tuple[dict, dict]:
    rows = {}
    with open(root / "mathvision" / "outputs" / f"{name}.jsonl", encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            rows[str(row["id"])] = row
    table = json.loads((root / "mathvision" / "outputs" / f"{name}_result.json").read_text(encoding="utf-8"))
    return rows, table


def percent(cell: str) -> float:
    """'436/3040=14.34%' -> 14.34"""
    return float(cell.rsplit("=", 1)[1].rstrip("%"))


def compare(root: Path, run_dir: Path, stage: EvaluateStage, reports: dict, full: bool) -> tuple[list[dict], list[str]]:
    """Rows of gaps per (setting, scope) and the list of gaps beyond tolerance left unexplained."""
    items = {p["source_id"]: {**p, "options": p["choices"] or []} for p in stage.benchmarks[BENCHMARK].read(0, 10**9, with_images=False)[0]}
    ours = defaultdict(dict)
    for shard in stage.shards(BENCHMARK):
        for row in StageDir(run_dir, STAGE_NAME).read(shard).to_pylist():
            ours[row["model"]][row["problem_id"]] = row
    findings, unexplained = [], []
    for name in SETTINGS:
        official_rows, table = load_official(root, name)
        report = reports[name]
        scopes = [("overall", None, report["overall"], OVERALL_TOLERANCE)]
        scopes += [
            (subject, subject, cell, SUBJECT_TOLERANCE)
            for subject, cell in report["by_subject"].items()
            if cell["problems"] >= MIN_SUBJECT_PROBLEMS
        ]
        for scope, subject, cell, tolerance in scopes:
            ids = [i for i in ours[name] if subject is None or items[i]["subject"] == subject]
            if full:
                official = percent(table["-all" if subject is None else subject])
            else:
                official = 100 * sum(bool(official_rows[i]["correct"]) for i in ids) / len(ids)
            gap = cell["accuracy"] - official
            classes = Counter()
            examples = defaultdict(list)
            for i in ids:
                if ours[name][i]["correct"] != bool(official_rows[i]["correct"]):
                    ours_row = {**ours[name][i], "response": official_rows[i]["response"] or ""}
                    label = disagreement_class({**items[i], "response": ours_row["response"]}, ours_row, official_rows[i])
                    sign = 1 if ours_row["correct"] else -1
                    classes[(label, sign)] += 1
                    examples[label].append(i)
            # the gap is exactly the signed sum of the disagreements: +1 where we credit, -1 where we do not
            explained = 100 * sum(sign * n for (_, sign), n in classes.items()) / len(ids)
            finding = {
                "setting": name, "scope": scope, "problems": len(ids), "ours": cell["accuracy"], "official": official,
                "gap": gap, "tolerance": tolerance, "classes": classes, "examples": examples, "explained": explained,
            }
            findings.append(finding)
            if abs(gap) > tolerance and (abs(explained - gap) > 0.01 or not classes):
                unexplained.append(f"{name} {scope}: gap {gap:+.2f} but classes sum to {explained:+.2f}")
    return findings, unexplained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=default_data_root())
    parser.add_argument("--limit", type=int, help="the first N problems only (official figures from the labels)")
    parser.add_argument("--examples", type=int, default=2)
    args = parser.parse_args(argv)
    config = evaluation_config(args.limit)
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as folder:
        started = time.perf_counter()
        reports = run_evaluation(config, Path(folder), args.data_root)[BENCHMARK]
        seconds = time.perf_counter() - started
        stage = EvaluateStage(config, args.data_root)
        findings, unexplained = compare(args.data_root, Path(folder), stage, reports, full=args.limit is None)
    problems = reports[SETTINGS[0]]["counts"]["problems"]
    print(f"MATH-V {BENCHMARK}: {problems} problems x {len(SETTINGS)} settings through the evaluate stage in {seconds:.1f} s")
    print(f"{'setting':28} {'ours':>7} {'official':>8} {'gap':>6}  (overall; tolerance {OVERALL_TOLERANCE})")
    for f in findings:
        if f["scope"] == "overall":
            print(f"{f['setting']:28} {f['ours']:7.2f} {f['official']:8.2f} {f['gap']:+6.2f}")
    beyond = [f for f in findings if abs(f["gap"]) > f["tolerance"]]
    subject_cells = [f for f in findings if f["scope"] != "overall"]
    print(f"per subject (>= {MIN_SUBJECT_PROBLEMS} problems): {len(subject_cells)} cells, "
          f"{sum(abs(f['gap']) <= SUBJECT_TOLERANCE for f in subject_cells)} within {SUBJECT_TOLERANCE} points")
    print(f"gaps beyond tolerance: {len(beyond)}; each decomposed into disagreement classes (+: we credit, -: the benchmark does)")
    for f in beyond:
        print(f"\n{f['setting']} / {f['scope']} ({f['problems']} problems): ours {f['ours']:.2f} vs official "
              f"{f['official']:.2f}, gap {f['gap']:+.2f} = classes {f['explained']:+.2f}")
        for (label, sign), n in sorted(f["classes"].items(), key=lambda kv: -kv[1]):
            ids = ", ".join(f["examples"][label][: args.examples])
            print(f"  {'+' if sign > 0 else '-'}{n:4d} ({100 * sign * n / f['problems']:+.2f})  {label}  e.g. ids {ids}")
    totals = Counter()
    for f in findings:
        if f["scope"] == "overall":
            totals.update({label: n for (label, _), n in f["classes"].items()})
    print("\nall disagreements, all settings:")
    for label, n in totals.most_common():
        print(f"  {n:5d}  {label}")
    print("\nRESULT: " + ("every gap beyond tolerance explained" if not unexplained else "UNEXPLAINED: " + "; ".join(unexplained)))
    return 1 if unexplained else 0


if __name__ == "__main__":
    raise SystemExit(main())
