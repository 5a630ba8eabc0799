"""Dedupe at scale: a 1.6M-row problem table built from the real shared problems, with planted truth.

The table (text only: the bench measures the text path, so rows carry no images):
  distinct rows    every real TabMWP (question + its table as text) and GSM8K problem, and variants of
                   it: each number in the text shifted by a per-variant amount, a numeric answer shifted
                   with it (so no two variants share an answer), a person's name swapped in half of them
  exact copies     a distinct row again, byte for byte, under another source
  near copies      a distinct row with whitespace / case / punctuation noise and one or two small word
                   edits (filler word inserted, stop word dropped, synonym), numbers and answer unchanged
  answer traps     a near copy whose gold answer was changed: must never merge with its origin
It runs `DedupeIndex` + `DedupeStage` over the shards in a fresh process (so its peak RSS is the
dedupe's alone), scores the clusters against the truth, and times the naive datasketch loop (one
`MinHash` per document, `update` per shingle, `MinHashLSH.insert`/`query`) against ours on a subsample.

    python benchmarks/bench_dedupe.py --rows 1600000 --naive-rows 20000
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import queue
import re
import resource
import shutil
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.dedupe import DedupeConfig, DedupeIndex, DedupeStage  # noqa: E402
from pipeline.dedupe.unionfind import UnionFind  # noqa: E402
from pipeline.ingest.sources import SourceConfig, make_adapter  # noqa: E402
from pipeline.ingest.stage import problem_id  # noqa: E402
from pipeline.io import StageDir, stable_hash  # noqa: E402
from pipeline.stage import run_shard  # noqa: E402
from pipeline.text import normalise, normalise_text, problem_text  # noqa: E402
from schemas import PROBLEM_SCHEMA  # noqa: E402

DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
DISTINCT, EXACT_COPY, NEAR_COPY, ANSWER_TRAP = 0, 1, 2, 3
KIND_SHARE = {EXACT_COPY: 0.02, NEAR_COPY: 0.05, ANSWER_TRAP: 0.01}  # of all rows; the rest are distinct
NAMES = ["Ava", "Noah", "Mia", "Liam", "Zoe", "Omar", "Lena", "Ravi", "Ines", "Kofi", "Yuki", "Sara"]
FILLERS = ["then", "please", "now", "just", "exactly", "also", "really"]
STOP_WORDS = {"the", "a", "an", "then", "of", "to", "in", "and", "each"}
SYNONYMS = {
    "buys": "purchases",
    "total": "overall",
    "each": "every",
    "has": "owns",
    "gets": "receives",
    "makes": "earns",
}
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
_CAPITALISED = re.compile(r"\b[A-Z][a-z]{2,}\b")


@dataclass(frozen=True)
class Base:
    source: str
    question: str
    choices: tuple[str, ...] | None
    answer: str
    solution: str
    names: tuple[str, ...]  # capitalised words after the first (a person, a place, a day): swap targets


def load_bases(data_root: Path) -> list[Base]:
    """The 1,000 TabMWP + 1,319 GSM8K real problems, through the ingest adapters (text only)."""
    bases = []
    for name, fmt, path in [("tabmwp", "tabmwp", "tabmwp/problems.json"), ("gsm8k", "gsm8k", "gsm8k/test.jsonl")]:
        adapter = make_adapter(SourceConfig(name=name, format=fmt, path=path, domain="bench"), data_root)
        for record in adapter.records(0, adapter.count()):
            fields = adapter.to_fields(record)
            question = fields.question
            if fields.metadata.get("table"):  # no image in the bench: the table travels as text
                question = "\n".join(
                    filter(None, [question, fields.metadata.get("table_title"), fields.metadata["table"]])
                )
            names = tuple(
                sorted({m for m in _CAPITALISED.findall(fields.question)[1:] if m not in {"What", "How", "The"}})
            )
            choices = tuple(fields.choices) if fields.choices else None
            bases.append(Base(name, normalise_text(question), choices, fields.answer, fields.solution or "", names))
    return bases


def _shifted(number: str, amount: int) -> str:
    value = number.replace(",", "")
    whole, dot, fraction = value.partition(".")
    shifted = str(int(whole) + amount)
    if "," in number:
        shifted = f"{int(shifted):,}"
    return shifted + dot + fraction


def _shift_answer(answer: str, amount: int) -> str:
    try:
        value = float(answer.replace(",", ""))
    except ValueError:
        return answer  # a text answer: the shifted numbers already make the variant a different problem
    return f"{value + amount:.{len(answer.partition('.')[2])}f}"


def variant(base: Base, index: int) -> tuple[str, str]:
    """(question, answer) of variant `index` of a base problem; variant 0 is the problem itself."""
    if index == 0:
        return base.question, base.answer
    # Per-base steps: two bases with the same numbers (TabMWP reuses tables) get different variants.
    steps = iter(np.random.default_rng(zlib.crc32(base.question.encode())).integers(1, 100, size=1 << 10).tolist())
    question = _NUMBER.sub(lambda m: _shifted(m.group(), index * next(steps)), base.question)
    rng = np.random.default_rng([index, len(base.question)])
    if base.names and rng.random() < 0.5:
        question = re.sub(rf"\b{base.names[0]}\b", NAMES[index % len(NAMES)], question)
    answer = base.answer if base.choices else _shift_answer(base.answer, index)
    return question, answer


def near_copy(text: str, rng: np.random.Generator) -> str:
    """Whitespace, case and punctuation noise plus one or two small word edits; numbers untouched."""
    words = text.split(" ")
    for _ in range(int(rng.integers(1, 3))):
        edit = rng.integers(3)
        stops = [i for i, w in enumerate(words) if w.lower() in STOP_WORDS]
        swaps = [i for i, w in enumerate(words) if w.lower() in SYNONYMS]
        if edit == 1 and stops:
            del words[stops[int(rng.integers(len(stops)))]]
        elif edit == 2 and swaps:
            i = swaps[int(rng.integers(len(swaps)))]
            words[i] = SYNONYMS[words[i].lower()]
        else:
            words.insert(int(rng.integers(len(words) + 1)), FILLERS[int(rng.integers(len(FILLERS)))])
    text = " ".join(words)
    noise = rng.integers(4)
    if noise == 0:
        text = text.replace(" ", "  ", int(rng.integers(1, 4))).replace("\n", " \n ") + "\n"
    elif noise == 1:
        text = text.lower() if rng.random() < 0.5 else text.upper()
    elif noise == 2:
        text = text.replace(", ", " , ").rstrip("?.") + ("?!" if rng.random() < 0.5 else "")
    else:
        text = text.replace("'", "").replace(":", " -")
    return text


def changed_answer(base: Base, answer: str) -> str:
    if base.choices:
        return next(c for c in base.choices if normalise(c) != normalise(answer))
    try:
        return str(float(answer.replace(",", "")) + 1)
    except ValueError:
        return f"not {answer}"


@dataclass
class Plan:
    """One entry per table row (in table order): what the row is and which truth group it belongs to."""

    base: np.ndarray
    variant: np.ndarray
    kind: np.ndarray
    origin: np.ndarray  # table position of the distinct row a copy was made from (itself for distinct)
    truth: np.ndarray  # rows with the same truth are duplicates of each other


def make_plan(bases: list[Base], rows: int, seed: int) -> Plan:
    rng = np.random.default_rng(seed)
    copies = {kind: int(rows * share) for kind, share in KIND_SHARE.items()}
    distinct = rows - sum(copies.values())
    varies = np.array([bool(_NUMBER.search(b.question)) for b in bases])
    # Distinct rows: every base once, then variants round-robin over the bases that have numbers to change.
    numbered = np.flatnonzero(varies)
    extra = np.arange(distinct - len(bases))
    base = np.concatenate([np.arange(len(bases)), numbered[extra % len(numbered)]])
    index = np.concatenate([np.zeros(len(bases), dtype=np.int64), 1 + extra // len(numbered)])
    kind = np.full(distinct, DISTINCT, dtype=np.int8)
    origin = np.arange(distinct)
    for planted, count in copies.items():
        source_rows = rng.choice(distinct, size=count, replace=False)
        base = np.concatenate([base, base[source_rows]])
        index = np.concatenate([index, index[source_rows]])
        kind = np.concatenate([kind, np.full(count, planted, dtype=np.int8)])
        origin = np.concatenate([origin, source_rows])
    order = rng.permutation(rows)  # table position -> plan entry; copies land in other shards
    position = np.empty(rows, dtype=np.int64)
    position[order] = np.arange(rows)
    truth = np.where(kind == ANSWER_TRAP, distinct + np.arange(rows), origin)  # a trap is its own problem
    return Plan(base[order], index[order], kind[order], position[origin[order]], truth[order])


def shard_table(bases: list[Base], plan: Plan, start: int, stop: int) -> pa.Table:
    rows = []
    for position in range(start, stop):
        base = bases[plan.base[position]]
        question, answer = variant(base, int(plan.variant[position]))
        kind = plan.kind[position]
        source = f"bench_{base.source}"
        if kind != DISTINCT:
            rng = np.random.default_rng([position, 7])
            source = "bench_copies"
            if kind in (NEAR_COPY, ANSWER_TRAP):
                question = near_copy(question, rng)
            if kind == ANSWER_TRAP:
                answer = changed_answer(base, answer)
        choices = list(base.choices) if base.choices else None
        rows.append(
            {
                "problem_id": problem_id(question, choices, answer, []),
                "source": source,
                "source_id": str(position),
                "domain": "bench",
                "question": question,
                "images": [],
                "choices": choices,
                "answer": answer,
                "answer_type": "text",
                "question_type": "multi_choice" if choices else "free_form",
                "precision": None,
                "unit": None,
                "solution": base.solution,
                "metadata": "{}",
            }
        )
    return pa.Table.from_pylist(rows, schema=PROBLEM_SCHEMA)


def write_problems(run_dir: Path, bases: list[Base], plan: Plan, shard_size: int, positions: range) -> list[str]:
    """The table as problem shards; a kept run's finished shards are reused (the plan is seeded)."""
    problems = StageDir(run_dir, "problems")
    identity = stable_hash(["bench", shard_size, len(plan.kind), positions.start, positions.stop])
    shards = []
    for number, start in enumerate(range(positions.start, positions.stop, shard_size)):
        shard = f"bench-{number:05d}"
        if not problems.is_done(shard, identity):
            table = shard_table(bases, plan, start, min(start + shard_size, positions.stop))
            problems.write(shard, table, identity, {})
        shards.append(shard)
    return shards


class TreeRSS(threading.Thread):
    """Samples the resident memory of this process plus all its children (the signature workers run
    beside it), so the peak counts what is alive at the same time. Shared library pages are counted
    once per process: an overestimate."""

    def __init__(self, interval_s: float = 0.05):
        super().__init__(daemon=True)
        self.peak = 0
        self.interval_s = interval_s  # listing the children reads /proc: ~4% of a core at 0.05 s
        self._done = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self._done.wait(self.interval_s):
            try:
                total = me.memory_info().rss + sum(c.memory_info().rss for c in me.children(recursive=True))
            except psutil.Error:  # a worker exited between listing and reading it
                continue
            self.peak = max(self.peak, total)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def _measure(run_dir: str, shards: list[str], config_json: str, results) -> None:
    """Child process: prepare + stage over every shard; reports wall time and peak memory."""
    logging.basicConfig(level=logging.INFO, format="  %(message)s", stream=sys.stdout)  # phase timings
    config = DedupeConfig.model_validate_json(config_json)
    memory = TreeRSS()
    memory.start()
    started = time.perf_counter()
    index_dir = DedupeIndex(config).prepare(run_dir, shards)
    prepared = time.perf_counter()
    stage = DedupeStage(config, index_dir)
    with ThreadPoolExecutor(config.workers) as pool:  # run_shard is Parquet I/O: threads overlap it
        list(pool.map(lambda shard: run_shard(stage, run_dir, shard), shards))
    finished = time.perf_counter()
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    results.put(
        {
            "prepare_s": prepared - started,
            "stage_s": finished - prepared,
            "wall_s": finished - started,
            # CPU seconds of main + workers: on a shared machine, what the wall time would have cost alone
            "cpu_s": own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime,
            "load_average": os.getloadavg()[0],
            "peak_rss_tree_bytes": memory.stop(),
            "peak_rss_main_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "peak_rss_worker_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
            "index_stats": json.loads((index_dir / "manifest.json").read_text())["stats"],
        }
    )


def measure(run_dir: Path, shards: list[str], config: DedupeConfig) -> dict:
    for previous in ("dedupe_index", "dedupe", "quarantine"):  # a kept run is measured from cold too
        shutil.rmtree(run_dir / previous, ignore_errors=True)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_measure, args=(str(run_dir), shards, config.model_dump_json(), results))
    child.start()
    while True:
        try:
            result = results.get(timeout=5)
            break
        except queue.Empty:
            if not child.is_alive():
                raise RuntimeError(f"measurement process died with exit code {child.exitcode}") from None
    child.join()
    return result


def evaluate(run_dir: Path, shards: list[str], plan: Plan) -> dict:
    dedupe, problems = StageDir(run_dir, "dedupe"), StageDir(run_dir, "problems")
    ann = pa.concat_tables([dedupe.read(s, ["near_cluster", "is_representative", "duplicate_of"]) for s in shards])
    answers = pa.concat_tables([problems.read(s, ["answer"]) for s in shards]).column("answer").to_pylist()
    ids = pa.concat_tables([problems.read(s, ["problem_id"]) for s in shards]).column("problem_id").to_pylist()
    near = ann.column("near_cluster").to_numpy(zero_copy_only=False)
    representative = ann.column("is_representative").to_numpy(zero_copy_only=False)
    rep_position = {ids[i]: i for i in np.flatnonzero(representative)}
    duplicates = np.flatnonzero(~representative)
    rep_of = np.array(
        [rep_position[d] for d in ann.column("duplicate_of").take(pa.array(duplicates)).to_pylist()], dtype=np.int64
    )
    same_cluster = near == near[plan.origin]
    result = {
        f"recall_{name}": float(same_cluster[plan.kind == kind].mean())
        for name, kind in [("near_copies", NEAR_COPY), ("exact_copies", EXACT_COPY)]
    }
    result["merged_rows"] = len(duplicates)
    result["precision"] = float((plan.truth[duplicates] == plan.truth[rep_of]).mean()) if len(duplicates) else 1.0
    # Truth calls two different real problems distinct even when the real data repeats itself (TabMWP
    # reuses a table with only a name or noun swapped): such merges are counted apart.
    originals = (
        (plan.variant[duplicates] == 0) & (plan.variant[rep_of] == 0) & (plan.base[duplicates] != plan.base[rep_of])
    )
    result["merges_between_different_real_problems"] = int(originals.sum())
    result["cross_answer_merges"] = int(
        sum(answers[d].strip() != answers[r].strip() for d, r in zip(duplicates, rep_of))
    )
    result["answer_traps_merged_with_origin"] = int(same_cluster[plan.kind == ANSWER_TRAP].sum())
    result["planted"] = {
        name: int((plan.kind == kind).sum())
        for name, kind in [("near_copies", NEAR_COPY), ("exact_copies", EXACT_COPY), ("answer_traps", ANSWER_TRAP)]
    }
    return result


def naive_datasketch(run_dir: Path, shards: list[str], config: DedupeConfig) -> tuple[float, int]:
    """The per-document loop everyone writes first; returns (seconds, rows merged)."""
    from datasketch import MinHash, MinHashLSH

    problems = StageDir(run_dir, "problems")
    table = pa.concat_tables([problems.read(s, ["question", "choices", "answer"]) for s in shards]).to_pydict()
    started = time.perf_counter()
    width = config.num_perm // config.bands
    lsh = MinHashLSH(threshold=config.jaccard_threshold, num_perm=config.num_perm, params=(config.bands, width))
    minhashes, answers = [], []
    for i, (question, choices, answer) in enumerate(zip(table["question"], table["choices"], table["answer"])):
        text = normalise(problem_text(question, choices))
        n = config.shingle_chars
        minhash = MinHash(num_perm=config.num_perm, seed=config.seed)
        for shingle in {text[k : k + n] for k in range(max(1, len(text) - n + 1))}:
            minhash.update(shingle.encode("utf-8"))
        lsh.insert(i, minhash)
        minhashes.append(minhash)
        answers.append(normalise(answer))
    clusters = UnionFind(len(minhashes))
    for i, minhash in enumerate(minhashes):
        for j in lsh.query(minhash):
            if j != i and answers[i] == answers[j] and minhash.jaccard(minhashes[j]) >= config.jaccard_threshold:
                clusters.union(i, j)
    seconds = time.perf_counter() - started
    return seconds, int((clusters.roots() != np.arange(len(minhashes))).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_600_000)
    parser.add_argument("--naive-rows", type=int, default=20_000)
    parser.add_argument("--shard-size", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument("--keep", type=Path, default=None, help="build the table here, keep it, reuse it next time")
    args = parser.parse_args()
    config = DedupeConfig(workers=args.workers)
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_dedupe_"))
    try:
        started = time.perf_counter()
        bases = load_bases(args.data_root)
        plan = make_plan(bases, args.rows, args.seed)
        shards = write_problems(root / "full", bases, plan, args.shard_size, range(args.rows))
        print(
            f"table: {args.rows:,} rows from {len(bases):,} real problems in {len(shards)} shards "
            f"(built in {time.perf_counter() - started:.0f} s)"
        )
        full, quality = full_run(root / "full", shards, plan, config)
        naive_rows = min(args.naive_rows, args.rows)
        sub = write_problems(root / "sub", bases, plan, args.shard_size, range(naive_rows))
        speedup = naive_comparison(root / "sub", sub, config, full_docs_per_s=args.rows / full["wall_s"])
        goals = {
            "time < 10 min": full["wall_s"] < 600,
            "memory < 6 GiB": full["peak_rss_tree_bytes"] < 6 * 2**30,
            "recall >= 0.95": quality["recall_near_copies"] >= 0.95,
            "no cross-answer merge": quality["cross_answer_merges"] == 0,
            ">= 5x naive": speedup >= 5,
        }
        print("goals:", ", ".join(f"{goal} {'met' if met else 'MISSED'}" for goal, met in goals.items()))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


def full_run(run_dir: Path, shards: list[str], plan: Plan, config: DedupeConfig) -> tuple[dict, dict]:
    full = measure(run_dir, shards, config)
    quality = evaluate(run_dir, shards, plan)
    rows = full["index_stats"]["rows"]
    print(
        f"ours, {config.workers} workers: {rows / full['wall_s']:,.0f} docs/s, wall {full['wall_s']:.1f} s "
        f"(prepare {full['prepare_s']:.1f} s + stage {full['stage_s']:.1f} s), {full['cpu_s']:.0f} CPU-s, 1-min load "
        f"average at the end {full['load_average']:.1f} on {os.cpu_count()} cores; peak RSS of main + workers "
        f"together {full['peak_rss_tree_bytes'] / 2**30:.2f} GiB (main alone "
        f"{full['peak_rss_main_kb'] / 2**20:.2f} GiB, largest worker {full['peak_rss_worker_kb'] / 2**20:.2f} GiB)"
    )
    print("index stats:", json.dumps(full["index_stats"], sort_keys=True))
    print("planted:", json.dumps(quality.pop("planted")))
    print("quality:", json.dumps(quality, sort_keys=True))
    return full, quality


def naive_comparison(run_dir: Path, shards: list[str], config: DedupeConfig, full_docs_per_s: float) -> float:
    """Ours and the naive loop on the same subsample, one process each; returns the speed ratio."""
    ours = measure(run_dir, shards, config.model_copy(update={"workers": 1}))
    naive_s, naive_merged = naive_datasketch(run_dir, shards, config)
    rows = ours["index_stats"]["rows"]
    print(
        f"subsample {rows:,} rows, one process each: naive datasketch loop {rows / naive_s:,.0f} docs/s "
        f"({naive_s:.1f} s, {naive_merged} rows merged) vs ours {rows / ours['wall_s']:,.0f} docs/s "
        f"({ours['wall_s']:.1f} s, {rows - ours['index_stats']['near_clusters']} rows merged): "
        f"{naive_s / ours['wall_s']:.1f}x"
    )
    print(f"full run throughput vs naive loop: {full_docs_per_s / (rows / naive_s):.1f}x")
    return naive_s / ours["wall_s"]


if __name__ == "__main__":
    main()
