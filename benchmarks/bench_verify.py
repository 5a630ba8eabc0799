"""Verifier agreement with the benchmarks' own judges, and throughput, on the real recorded responses.

    python benchmarks/bench_verify.py [--data-root PATH] [--examples 3]

Sources: TabMWP GPT-3 CoT outputs vs `true_false`, MathVista Bard and GPT-4 responses vs `true_false`,
GSM8K model solutions vs `is_correct`. Prints agreement per source, disagreement classes with examples,
and end-to-end answers/s through `Verifier.judge_many`, against the baseline of calling math-verify's
`parse` + `verify` on every response (the usual reward-function recipe).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.paths import default_data_root  # noqa: E402
from pipeline.verify import Verifier, VerifierConfig, VerifyItem  # noqa: E402

TABMWP_TYPES = {"integer_number": "integer", "decimal_number": "float"}
GSM8K_KEYS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


NO_ANSWER_GIVEN = re.compile(
    r"^\s*$|cannot be determined|insufficient|not provided|impossible to (?:determine|provide|find|answer)"
    r"|can't help|can't process|cannot process|cannot be answered|cannot answer|not possible to determine"
    r"|cannot be provided|cannot provide|not provide enough|cannot determine|we need to know",
    re.I,
)


def label_error(text: str, official_prediction: str | None, label: bool, ours: bool, extracted: str | None) -> bool:
    """Evidence that the official label does not judge what the response says.

    When their extraction fails, TabMWP's and MathVista's scorers fall back to some option, so a
    label can rest on a prediction the response never states, or call a refusal correct.
    """
    if label == ours:
        return False
    if label and extracted is None and NO_ANSWER_GIVEN.search(text):
        return True
    squash = lambda value: re.sub(r"[\s$,*]+", "", str(value).lower())  # noqa: E731
    return official_prediction is not None and squash(official_prediction) not in squash(text)


def labelled_items(data_root: Path) -> list[tuple[str, str, VerifyItem, bool, str | None]]:
    """(source, id, item, official label, official prediction) for every recorded response."""
    rows = []
    problems = json.loads((data_root / "tabmwp/problems.json").read_text())
    for pid, output in json.loads((data_root / "tabmwp/gpt3_cot_outputs.json").read_text()).items():
        problem = problems[pid]
        item = VerifyItem(
            text=str(output["output"]).replace("\\n", "\n"),
            gold=problem["answer"],
            answer_type=TABMWP_TYPES.get(problem["ans_type"], "text"),
            question_type="multi_choice" if problem["ques_type"] == "multi_choice" else "free_form",
            choices=problem["choices"],
            unit=problem["unit"],
        )
        rows.append(("tabmwp", pid, item, bool(output["true_false"]), output.get("prediction")))
    for name in ("output_bard.json", "output_gpt4_2shot_solution.json"):
        for pid, row in json.loads((data_root / "mathvista" / name).read_text()).items():
            item = VerifyItem(
                text=str(row.get("response") or ""),
                gold=str(row["answer"]),
                answer_type=row["answer_type"],
                question_type=row["question_type"],
                choices=row["choices"],
                precision=int(row["precision"]) if row.get("precision") is not None else None,
                unit=row.get("unit"),
            )
            prediction = row.get("prediction")
            rows.append((f"mathvista_{name.split('_')[1]}", pid, item, bool(row["true_false"]), prediction))
    tests = [json.loads(line) for line in (data_root / "gsm8k/test.jsonl").read_text().splitlines()]
    solutions = [json.loads(line) for line in (data_root / "gsm8k/example_model_solutions.jsonl").read_text().splitlines()]
    for index, (test, solution) in enumerate(zip(tests, solutions)):
        gold = test["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        for key in GSM8K_KEYS:
            item = VerifyItem(text=solution[key]["solution"], gold=gold, answer_type="integer")
            rows.append(("gsm8k", f"{index}/{key}", item, bool(solution[key]["is_correct"]), None))
    return rows


def baseline_math_verify(items: list[VerifyItem]) -> float:
    """Seconds for math-verify's parse + verify on every whole response (in this process, main thread)."""
    from math_verify import parse, verify

    started = time.perf_counter()
    for item in items:
        verify(parse(item.gold), parse(item.text))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=default_data_root())
    parser.add_argument("--examples", type=int, default=3)
    parser.add_argument("--baseline-sample", type=int, default=500)
    args = parser.parse_args()

    rows = labelled_items(args.data_root)
    items = [row[2] for row in rows]
    with Verifier(VerifierConfig(workers=2)) as verifier:
        verifier.judge_many([VerifyItem(text="\\boxed{\\sqrt{2}}", gold="2^{1/2}")])  # start the workers untimed
        started = time.perf_counter()
        verdicts = verifier.judge_many(items)
        elapsed = time.perf_counter() - started

    agree: Counter[str] = Counter()
    total: Counter[str] = Counter()
    label_errors: Counter[str] = Counter()
    classes: dict[tuple[str, str], list] = defaultdict(list)
    reasons: Counter[str] = Counter(v.reason for v in verdicts)
    for (source, pid, item, label, prediction), verdict in zip(rows, verdicts):
        total[source] += 1
        if verdict.correct == label:
            agree[source] += 1
        elif label_error(item.text, prediction, label, verdict.correct, verdict.extracted):
            label_errors[source] += 1
            classes[(source, f"label_error: labelled {'correct' if label else 'wrong'} on a prediction the response does not make")].append(
                (pid, item.gold, f"{verdict.extracted} (official: {prediction})", item.text[-160:])
            )
        else:
            kind = "label true, ours false" if label else "label false, ours true"
            classes[(source, f"{kind} ({verdict.reason}/{verdict.method})")].append((pid, item.gold, verdict.extracted, item.text[-160:]))

    print(f"{'source':<20} {'n':>6} {'agree':>8} {'label errors':>13} {'agree excl. label errors':>25}")
    groups = {s: [s] for s in total} | {"mathvista (all)": [s for s in total if s.startswith("mathvista")]}
    for name, members in groups.items():
        n, a, e = (sum(c[m] for m in members) for c in (total, agree, label_errors))
        print(f"{name:<20} {n:>6} {a / n:>8.2%} {e:>13} {a / (n - e):>25.2%}")
    print(f"\nverdict paths: {dict(reasons.most_common())}")
    print("\ndisagreement classes:")
    for (source, kind), examples in sorted(classes.items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(examples):>4}  {source:<16} {kind}")
        for pid, gold, extracted, tail in examples[: args.examples]:
            print(f"          id={pid} gold={gold!r} extracted={extracted!r} tail={tail!r}")

    sample = items[: args.baseline_sample]
    baseline_s = baseline_math_verify(sample)
    ours_rate = len(items) / elapsed
    baseline_rate = len(sample) / baseline_s
    print(f"\nthroughput: ours {ours_rate:,.0f} answers/s ({len(items)} in {elapsed:.2f} s, 2 math-verify workers)")
    print(f"baseline:   math-verify parse+verify on every response {baseline_rate:,.0f} answers/s ({len(sample)} sampled)")
    print(f"ratio:      {ours_rate / baseline_rate:.1f}x")


if __name__ == "__main__":
    main()
