"""Decontamination: `prepare_decontam` snapshots the benchmark test items once; `DecontamStage` flags
each problem shard against them, one boolean column per benchmark plus the best textual score.

    decontam_index/<key>/items.parquet   normalised benchmark questions, answers and numbers
    decontam_index/<key>/manifest.json   written last (content hash, counts, skipped rows)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from pipeline.config_base import StrictConfig
from pipeline.decontam.benchmarks import BenchmarkConfig, adapter, read_items
from pipeline.decontam.overlap import answers_agree, ngram_size, numbers_contained, resolved_answer
from pipeline.dedupe.minhash import band_keys, text_signatures
from pipeline.dedupe.text import normalise, numbers_of, problem_text, word_shingle_hashes
from pipeline.index import building, index_path, is_built, load_manifest, write_manifest
from pipeline.io import file_sha256, stable_hash, write_parquet_atomic
from pipeline.stage import ShardResult, Stage

ITEMS_SCHEMA = pa.schema(
    [
        ("benchmark", pa.string()),
        ("source_id", pa.string()),
        ("question", pa.string()),  # normalised question: its n-grams are what coverage counts
        ("text", pa.string()),  # normalised question + choices: what MinHash compares
        ("answer", pa.string()),  # resolved, normalised gold answer
        ("numbers", pa.list_(pa.string())),
    ]
)


class DecontamConfig(StrictConfig):
    benchmarks: list[BenchmarkConfig] = Field(
        default_factory=lambda: [
            BenchmarkConfig(name="mathvista_testmini", format="mathvista", path="mathvista/testmini.json")
        ]
    )
    ngram: int = 13  # the classic contamination n-gram
    fallback_ngram: int = 6  # for benchmark questions shorter than `ngram` tokens; shorter still: MinHash only
    coverage_threshold: float = 0.5  # share of a long benchmark question's 13-grams found in the problem
    # A short question must appear whole: half of "what is the perimeter of the rectangle" is generic.
    fallback_coverage_threshold: float = 1.0
    jaccard_threshold: float = 0.9  # MinHash similarity of the whole texts
    # Off: any textual match flags, even an identical template question over another table with
    # another answer (6 real TabMWP problems match MathVista testmini that way).
    check_answer_and_numbers: bool = True
    shingle_chars: int = 5
    num_perm: int = 128
    bands: int = 16  # 8 rows per band: a pair at Jaccard 0.9 meets in a bucket with p > 0.999
    seed: int = 1


def decontam_schema(config: DecontamConfig) -> pa.Schema:
    return pa.schema(
        [("problem_id", pa.string())]
        + [(f"contaminated_{b.name}", pa.bool_()) for b in config.benchmarks]
        + [
            ("contamination_score", pa.float32()),  # best max(n-gram coverage, MinHash Jaccard) over all items
            ("contamination_match", pa.string()),  # "<benchmark>:<source_id>" of that item; null: no candidate
        ]
    )


def prepare_decontam(run_dir: Path | str, config: DecontamConfig, data_root: Path | str) -> Path:
    """Read every benchmark's test items into the run's index (skipped when it is already there)."""
    run_dir, data_root = Path(run_dir), Path(data_root)
    identities = [adapter(b, data_root).identity() for b in config.benchmarks]
    key = stable_hash(["decontam", config.identity(), identities])
    index_dir = index_path(run_dir, "decontam", key)
    if is_built(index_dir):
        return index_dir
    rows, counts, skipped = [], {}, {}
    for benchmark in config.benchmarks:
        items, reasons = read_items(benchmark, data_root)
        counts[benchmark.name], skipped[benchmark.name] = len(items), dict(reasons)
        for item in items:
            text = normalise(problem_text(item.question, item.choices))
            rows.append(
                {
                    "benchmark": item.benchmark,
                    "source_id": item.source_id,
                    "question": normalise(item.question),
                    "text": text,
                    "answer": resolved_answer(item.answer, item.choices),
                    "numbers": numbers_of(normalise(item.question)),  # a copy may drop the choices
                }
            )
    with building(index_dir) as staging:
        write_parquet_atomic(staging / "items.parquet", pa.Table.from_pylist(rows, schema=ITEMS_SCHEMA))
        content_hash = file_sha256(staging / "items.parquet")
        write_manifest(staging, {"key": key, "content_hash": content_hash, "items": counts, "skipped": skipped})
    return index_dir


class BenchmarkIndex:
    """Lookups over the benchmark items: n-gram -> items, LSH band key -> items, per-item facts."""

    def __init__(self, items: pa.Table, config: DecontamConfig):
        self.config = config
        columns = items.to_pydict()
        self.labels = [f"{b}:{s}" for b, s in zip(columns["benchmark"], columns["source_id"])]
        self.benchmark = columns["benchmark"]
        self.answer = columns["answer"]
        self.numbers = columns["numbers"]
        self.grams: dict[int, dict[int, list[int]]] = {}
        self.gram_count = np.zeros(len(self.labels), dtype=np.int64)
        self.coverage_threshold = np.full(len(self.labels), config.fallback_coverage_threshold)
        questions = [q.split() for q in columns["question"]]
        for n in {config.ngram, config.fallback_ngram}:
            members = [
                i for i, q in enumerate(questions) if ngram_size(len(q), config.ngram, config.fallback_ngram) == n
            ]
            if n == config.ngram:
                self.coverage_threshold[members] = config.coverage_threshold
            hashes, offsets = word_shingle_hashes([questions[i] for i in members], n)
            lookup = self.grams.setdefault(n, {})
            for k, item in enumerate(members):
                unique = set(hashes[offsets[k] : offsets[k + 1]].tolist())
                self.gram_count[item] = len(unique)
                for gram in unique:
                    lookup.setdefault(gram, []).append(item)
        self.gram_arrays = {n: np.fromiter(lookup, dtype=np.uint32) for n, lookup in self.grams.items()}
        self.signature = _signatures(columns["text"], config)
        self.bands: list[dict[int, list[int]]] = [{} for _ in range(config.bands)]
        for item, keys in enumerate(band_keys(self.signature, config.bands).tolist()):
            for band, key in enumerate(keys):
                self.bands[band].setdefault(key, []).append(item)
        self.band_arrays = [np.fromiter(lookup, dtype=np.uint64) for lookup in self.bands]

    def candidates(self, texts: list[str]) -> dict[tuple[int, int], list[float]]:
        """(row, item) -> [n-gram coverage, MinHash Jaccard] for every pair that shares anything."""
        coverage: dict[tuple[int, int], float] = {}
        token_lists = [t.split() for t in texts]
        for n, lookup in self.grams.items():
            hashes, offsets = word_shingle_hashes(token_lists, n)
            hits = np.flatnonzero(np.isin(hashes, self.gram_arrays[n]))
            rows = np.searchsorted(offsets, hits, side="right") - 1
            found = Counter(
                (row, item) for row, gram in set(zip(rows.tolist(), hashes[hits].tolist())) for item in lookup[gram]
            )
            coverage.update({pair: count / self.gram_count[pair[1]] for pair, count in found.items()})
        signature = _signatures(texts, self.config)
        pairs = set(coverage)
        for band, keys in enumerate(band_keys(signature, self.config.bands).T):
            for row in np.flatnonzero(np.isin(keys, self.band_arrays[band])).tolist():
                pairs.update((row, item) for item in self.bands[band][int(keys[row])])
        return {
            (row, item): [coverage.get((row, item), 0.0), float((signature[row] == self.signature[item]).mean())]
            for row, item in pairs
        }


def _signatures(texts: list[str], config: DecontamConfig) -> np.ndarray:
    return text_signatures(texts, config.shingle_chars, config.num_perm, config.seed)


class DecontamStage(Stage):
    name = "decontam"
    inputs = ("problems",)

    def __init__(self, config: DecontamConfig, index_dir: Path | str):
        super().__init__(config)
        self.index_dir = Path(index_dir)
        self.manifest = load_manifest(self.index_dir)
        self.output_schema = decontam_schema(config)
        self._index: BenchmarkIndex | None = None

    @property
    def index(self) -> BenchmarkIndex:
        if self._index is None:
            self._index = BenchmarkIndex(pq.read_table(self.index_dir / "items.parquet"), self.config)
        return self._index

    def fingerprint(self) -> str:
        return stable_hash([self.name, self.config.identity(), self.manifest["content_hash"]])

    def process(self, shard: str, inputs: Mapping[str, pa.Table]) -> ShardResult:
        problems = inputs["problems"].select(["problem_id", "question", "choices", "answer"]).to_pydict()
        texts = [normalise(problem_text(q, c)) for q, c in zip(problems["question"], problems["choices"])]
        rows = len(texts)
        names = [b.name for b in self.config.benchmarks]
        flags = {name: [False] * rows for name in names}
        best: list[tuple[float, str | None]] = [(0.0, None)] * rows
        stats = Counter(rows_in=rows)
        index = self.index
        for (row, item), (coverage, jaccard) in sorted(index.candidates(texts).items()):
            score = max(coverage, jaccard)
            if score > best[row][0]:
                best[row] = (score, index.labels[item])
            if coverage < index.coverage_threshold[item] and jaccard < self.config.jaccard_threshold:
                continue
            same_problem = numbers_contained(index.numbers[item], numbers_of(texts[row])) and answers_agree(
                resolved_answer(problems["answer"][row], problems["choices"][row]), index.answer[item]
            )
            if same_problem or not self.config.check_answer_and_numbers:
                flags[index.benchmark[item]][row] = True
            else:
                stats["text_match_with_other_answer_or_numbers"] += 1
        for name in names:
            stats[f"contaminated_{name}"] = sum(flags[name])
        table = pa.table(
            {
                "problem_id": inputs["problems"].column("problem_id"),
                **{f"contaminated_{name}": flags[name] for name in names},
                "contamination_score": [score for score, _ in best],
                "contamination_match": [label for _, label in best],
            },
            schema=self.output_schema,
        )
        return ShardResult(table, [], stats)
