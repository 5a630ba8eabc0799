"""The verify stage's hot paths beside their plain forms, on real recorded responses and bench CoTs.

Each fast path has a plain form with the same contract in this process: the repetition gate's
definition (regex tokens, n-grams as tuples), `finditer` over the whole text for the answer phrases,
the refusal and no-option patterns searched without their literal pre-check, and the sentence split
written with its lookbehinds first. Every pair must agree on every text; the script prints each one's
time per call and the ratio, then `extract_answer` per question type.

    python benchmarks/bench_verify_speed.py [--data-root PATH] [--cots 20000]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dedupe import DATA_ROOT  # noqa: E402
from bench_scale import StubTeacher  # noqa: E402

from pipeline.generate.base import GenerationRequest, TeacherConfig  # noqa: E402
from pipeline.verify.extract import extract_answer  # noqa: E402
from pipeline.verify.extract.choice import SENTENCE_BREAK  # noqa: E402
from pipeline.verify.extract.markers import ANSWER_PHRASES, matches_at  # noqa: E402
from pipeline.verify.extract.refusal import NO_OPTION, REFUSAL  # noqa: E402
from pipeline.verify.labelled import load_all  # noqa: E402
from pipeline.verify.quality import QualityConfig, repeated_fraction  # noqa: E402

_PLAIN_TOKEN = re.compile(r"\w{1,8}|[^\w\s]")
_PLAIN_SENTENCE_BREAK = re.compile(r"(?<!\bMr\.)(?<!\bMs\.)(?<!\bMrs\.)(?<!\bDr\.)(?<=[.!?。])\s+")


def plain_repeated_fraction(text: str, ngram: int, min_count: int) -> float:
    """The repetition gate's definition, written plainly: regex tokens, n-grams as tuples, windows unioned
    one by one."""
    tokens = _PLAIN_TOKEN.findall(text)
    if len(tokens) < 4 * ngram:
        return 0.0
    grams = [tuple(tokens[i : i + ngram]) for i in range(len(tokens) - ngram + 1)]
    counts, seen, covered = Counter(grams), set(), set()
    for start, gram in enumerate(grams):
        if gram in seen and counts[gram] >= min_count:
            covered.update(range(start, start + ngram))
        seen.add(gram)
    return len(covered) / len(tokens)


def bench_cots(count: int, cot_chars: int = 2000) -> list[str]:
    """`count` chains of thought from bench_scale's stub teacher (its text, gold answers 1..count)."""
    teacher = StubTeacher([TeacherConfig(name="stub", model="stub")], [], cot_chars, 0.6)
    requests = []
    for index in range(count):
        teacher.answers[str(index)] = str(index)
        rid = hashlib.sha256(str(index).encode()).hexdigest()[:24]
        requests.append(GenerationRequest(rid, str(index), "stub", "stub", 0, "teacher", []))
    return [result.text for result in teacher.generate(requests)]


def timed(function: Callable, inputs: Sequence) -> tuple[list, float]:
    started = time.perf_counter()
    outputs = [function(value) for value in inputs]
    return outputs, (time.perf_counter() - started) / max(len(inputs), 1)


def compare(name: str, plain: Callable, fast: Callable, inputs: Sequence) -> dict:
    """Both forms on every input: they must agree; the time per call of each and the ratio."""
    expected, plain_s = timed(plain, inputs)
    got, fast_s = timed(fast, inputs)
    disagreements = sum(a != b for a, b in zip(expected, got))
    if disagreements:
        raise AssertionError(f"{name}: the fast form disagrees with the plain one on {disagreements} of {len(inputs)} inputs")
    print(f"{name:<34} {len(inputs):>8,} {plain_s * 1e6:>10.1f} {fast_s * 1e6:>10.1f} {plain_s / fast_s:>8.1f}x")
    return {"name": name, "inputs": len(inputs), "plain_us": plain_s * 1e6, "fast_us": fast_s * 1e6}


def spans(matches: list[re.Match]) -> list[tuple[int, int]]:
    return [match.span() for match in matches]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument("--cots", type=int, default=20_000, help="bench CoTs (about 2,000 characters) beside the recorded responses")
    args = parser.parse_args(argv)
    items = [row.item for row in load_all(args.data_root)]
    texts = [item.text for item in items] + bench_cots(args.cots)
    quality = QualityConfig()
    gate = (quality.repeat_ngram, quality.repeat_min_count)
    # the closing sentences `extract_choice` matches one by one, where the refusal patterns run most
    sentences = [s for text in texts for line in text.strip().splitlines()[-3:] for s in _PLAIN_SENTENCE_BREAK.split(line)]
    phrase = ANSWER_PHRASES[0]
    print(f"{len(items):,} recorded responses + {args.cots:,} bench CoTs")
    print(f"{'fast path':<34} {'inputs':>8} {'plain us':>10} {'fast us':>10} {'ratio':>9}")
    results = [
        compare("repetition gate", lambda t: plain_repeated_fraction(t, *gate), lambda t: repeated_fraction(t, *gate), texts),
        compare("answer phrase search", lambda t: spans(list(phrase.pattern.finditer(t))), lambda t: spans(matches_at(phrase.pattern, t, phrase.starts_at)), texts),
        compare("refusal search", lambda s: bool(REFUSAL.pattern.search(s)), lambda s: bool(REFUSAL.search(s)), sentences),
        compare("no-option search", lambda s: bool(NO_OPTION.pattern.search(s)), lambda s: bool(NO_OPTION.search(s)), sentences),
        compare("sentence split", _PLAIN_SENTENCE_BREAK.split, SENTENCE_BREAK.split, [line for t in texts for line in t.splitlines()[-3:]]),
    ]
    print(f"\n{'extract_answer':<34} {'inputs':>8} {'us':>10}")
    for question_type in ("free_form", "multi_choice"):
        chosen = [item for item in items if item.question_type == question_type]
        _, seconds = timed(lambda i: extract_answer(i.text, question_type=i.question_type, choices=i.choices, answer_type=i.answer_type), chosen)
        print(f"{question_type:<34} {len(chosen):>8,} {seconds * 1e6:>10.1f}")
    return results


if __name__ == "__main__":
    main()
