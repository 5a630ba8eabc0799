"""Agreement and throughput of the verifier on real recorded responses with independent labels.

    python benchmarks/bench_verify.py [--data-root PATH] [--workers 2] [--examples 3]

Sources (see shared/data/README.md): TabMWP GPT-3 CoT outputs (`true_false`), MathVista Bard and
GPT-4 responses (`true_false`), GSM8K 6B/175B solutions (`is_correct`). Prints agreement per
source, a table of disagreement classes with examples, and throughput end to end through
`Verifier.judge_many` (cold: including the start of the math-verify workers; warm: started).

Where a label is demonstrably wrong, the disagreement is classed "label_error: ..." with the
evidence, taken from the official pipeline's own recorded extraction; agreement is printed both
raw and with those label errors set aside. Nothing here tunes the verifier to the labels.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script from anywhere, against this checkout

from pipeline.verify import Verdict, Verifier, VerifierConfig  # noqa: E402
from pipeline.verify.labelled import LabelledResponse, load_all  # noqa: E402
from pipeline.verify.normalize import parse_number, strip_latex_wrappers  # noqa: E402

GOALS = {"tabmwp": 0.99, "gsm8k": 0.99, "mathvista": 0.97}
THROUGHPUT_GOAL = 5_000  # answers/s
EXPLICIT_METHODS = {"the_answer_is", "correct_answer", "boxed", "answer_tag", "choice_letter", "answer_line"}


def group_of(source: str) -> str:
    return source.split("/")[0]


# --- label-error evidence: why the official verdict is not about what the response says -----------

Evidence = tuple[str, str]  # (kind of label error, the concrete detail for this response)


def label_error_evidence(row: LabelledResponse, verdict: Verdict) -> Evidence | None:
    """Evidence, from the official pipeline's own recorded extraction, that its label is wrong."""
    if verdict.correct == row.label:
        return None
    if row.source == "tabmwp":
        return _tabmwp_evidence(row, verdict)
    if row.source.startswith("mathvista"):
        return _mathvista_evidence(row, verdict)
    return None


def _tabmwp_evidence(row: LabelledResponse, verdict: Verdict) -> Evidence | None:
    """TabMWP's scorer reads option letters with loose regexes, falls back to word overlap (first
    option on a tie), and compares free-text predictions as numbers only if they are bare numbers."""
    # the official scorer saw the output as stored, newlines escaped (the loader decodes them)
    text, official, choices = row.item.text.replace("\n", "\\n"), row.official_prediction or "", row.item.choices
    answers = f"the response answers {verdict.extracted!r}"
    if not text.strip():
        return "empty output credited", f"the official scorer turned an empty output into the option {official!r}"
    if choices and verdict.extracted in choices and official != verdict.extracted:
        initial = re.search(r"[Th]he answer is ([A-Z])[a-z]", text)
        if initial:
            return "official regex misread an option letter", (
                f"read {initial[1]!r} from the initial of '{initial[0]}...' -> {official!r}; {answers}"
            )
        opening = re.match(r"([A-Za-z]). ", text)
        if opening:
            return "official regex misread an option letter", (
                f"read {opening[1]!r} from the opening word {text.split()[0]!r} -> {official!r}; {answers}"
            )
        if official == choices[0] and not set(text.split()) & set(choices):
            return "official fallback picked the first option", (
                f"no option is a space-separated word of the output, all overlaps are 0 -> {official!r}; {answers}"
            )
    bare_number = re.fullmatch(r"[-+]?[\d,./]+", official.lstrip("$").rstrip(",./"))
    if not choices and verdict.correct and bare_number is None:
        return "official prediction not a bare number", (
            f"{official!r} was compared as a string; its value {verdict.extracted!r} equals the gold {row.item.gold!r}"
        )
    return None


def _mathvista_evidence(row: LabelledResponse, verdict: Verdict) -> Evidence | None:
    """MathVista's scorer maps an extraction that names no option to the most similar option."""
    extraction, choices = str(row.official_prediction or "").strip(), row.item.choices
    if choices:
        letters = re.findall(r"\(([a-zA-Z])\)", extraction)
        letter = letters[0].upper() if letters else extraction
        option_letters = [chr(ord("A") + i) for i in range(len(choices))]
        if extraction not in choices and letter not in option_letters:
            return "official extraction names no option (similarity guess)", (
                f"extraction {extraction[:60]!r} is no option; the scorer substituted the most similar one"
            )
        option = choices[option_letters.index(letter)] if letter in option_letters else None
        if option is not None and not _letter_or_option_occurs(letter, option, row.item.text):
            return "official extraction absent from response", (
                f"extraction {extraction!r}: neither the letter nor the option text occurs in the response"
            )
        return None
    if parse_number(extraction) is not None and not _number_occurs(extraction, row.item.text):
        return "official extraction absent from response", f"extraction {extraction!r} does not occur in the response"
    return None


def _number_occurs(number: str, text: str) -> bool:
    plain = strip_latex_wrappers(number).lstrip("$")
    return re.search(rf"(?<![\d.]){re.escape(plain)}(?![\d]|\.\d)", text) is not None


def _letter_or_option_occurs(letter: str, option: str, text: str) -> bool:
    letter_occurs = re.search(rf"(?<![A-Za-z]){letter}(?![A-Za-z])", text) is not None
    return letter_occurs or re.search(rf"(?<!\w){re.escape(option)}(?!\w)", text, re.IGNORECASE) is not None


# --- classes and report -----------------------------------------------------------------------------


def disagreement_class(row: LabelledResponse, verdict: Verdict, evidence: Evidence | None) -> str:
    if evidence is not None:
        return f"label_error ({group_of(row.source)}): {evidence[0]}"
    said = "true" if row.label else "false"
    return f"label {said}, ours {str(verdict.correct).lower()}: {verdict.reason} via {verdict.method}"


def print_agreement(rows, verdicts, evidences) -> dict[str, float]:
    total, agree, errors = Counter(), Counter(), Counter()
    for row, verdict, evidence in zip(rows, verdicts, evidences):
        for key in {group_of(row.source), row.source}:
            total[key] += 1
            agree[key] += verdict.correct == row.label
            errors[key] += evidence is not None
    print(f"{'source':42} {'n':>6} {'agree':>7} {'raw':>8} {'label_err':>9} {'excl. label errors':>19}")
    clean = {}
    for key in sorted(total, key=lambda k: (group_of(k), k != group_of(k), k)):
        rest = total[key] - errors[key]
        clean[key] = agree[key] / rest if rest else 1.0
        raw = agree[key] / total[key]
        print(f"{key:42} {total[key]:6d} {agree[key]:7d} {raw:8.2%} {errors[key]:9d} {clean[key]:19.2%}")
    return clean


def print_classes(rows, verdicts, evidences, examples: int) -> None:
    classes: dict[str, list[tuple[LabelledResponse, Verdict, Evidence | None]]] = defaultdict(list)
    for row, verdict, evidence in zip(rows, verdicts, evidences):
        if verdict.correct != row.label:
            classes[disagreement_class(row, verdict, evidence)].append((row, verdict, evidence))
    print(f"\n{'count':>5}  disagreement class")
    for name, members in sorted(classes.items(), key=lambda kv: -len(kv[1])):
        print(f"{len(members):5d}  {name}")
    for name, members in sorted(classes.items(), key=lambda kv: -len(kv[1])):
        print(f"\n## {name} ({len(members)})")
        for row, verdict, evidence in members[:examples]:
            tail = " ".join(row.item.text.split())[-160:]
            print(
                f"- {row.source} id={row.id} gold={row.item.gold!r} official={str(row.official_prediction)[:40]!r} "
                f"ours={verdict.extracted!r} ({verdict.reason})"
            )
            print(f"    {evidence[1] if evidence else '...' + tail}")


def measure(items, workers: int) -> tuple[list[Verdict], float, float]:
    """(verdicts, cold seconds, warm seconds): cold includes starting the workers in a fresh
    verifier; warm runs with started workers and emptied pure-function caches."""
    from pipeline.verify import normalize

    with Verifier(VerifierConfig(workers=workers)) as verifier:
        started = time.perf_counter()
        verdicts = verifier.judge_many(items)
        cold = time.perf_counter() - started
    for cached in (normalize.strip_latex_wrappers, normalize.normalize_text, normalize.parse_number):
        cached.cache_clear()
    with Verifier(VerifierConfig(workers=workers)) as verifier:
        verifier.start(wait=True)
        started = time.perf_counter()
        verifier.judge_many(items)
        warm = time.perf_counter() - started
    return verdicts, cold, warm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--examples", type=int, default=3, help="examples printed per disagreement class")
    args = parser.parse_args(argv)

    rows = load_all(args.data_root)
    verdicts, cold, warm = measure([row.item for row in rows], args.workers)
    evidences = [label_error_evidence(row, verdict) for row, verdict in zip(rows, verdicts)]

    print(f"{len(rows)} labelled responses from {args.data_root}\n")
    clean = print_agreement(rows, verdicts, evidences)
    print_classes(rows, verdicts, evidences, args.examples)

    paths = Counter(verdict.reason for verdict in verdicts)
    print(f"\nverdict paths: {dict(paths.most_common())}")
    print(f"throughput, {args.workers} math-verify workers, {len(rows)} answers through Verifier.judge_many:")
    print(f"  cold (workers start inside the call): {cold:6.2f} s  {len(rows) / cold:8.0f} answers/s")
    print(f"  warm (workers already started):       {warm:6.2f} s  {len(rows) / warm:8.0f} answers/s")

    misses = [f"{key} {clean[key]:.2%} < {goal:.0%}" for key, goal in GOALS.items() if clean[key] < goal]
    if len(rows) / warm < THROUGHPUT_GOAL:
        misses.append(f"warm throughput {len(rows) / warm:.0f}/s < {THROUGHPUT_GOAL}/s")
    print("\ngoals (agreement excluding evidenced label errors; warm throughput):", "met" if not misses else "MISSED")
    for miss in misses:
        print(f"  missed: {miss}")
    return 0 if not misses else 1


if __name__ == "__main__":
    sys.exit(main())
