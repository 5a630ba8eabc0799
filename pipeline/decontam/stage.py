"""Decontamination: `BenchmarkSnapshot` reads the benchmark test items once; `DecontamStage` flags
each problem shard against them, one boolean column per benchmark plus the best textual score.

A problem is a copy of an item when their texts match (n-gram coverage or MinHash), the item's numbers
occur in the problem and the answers agree; when both carry images, an image of the problem must also
be within `image_max_distance` bits (pHash) of one of the item's: the same question over another
figure is another problem (MATH-V's multi-part items share one preamble and one figure).

    decontam_index/<key>/items.parquet   normalised benchmark questions, answers and numbers
    decontam_index/<key>/manifest.json   written last (counts, skipped rows; see pipeline/index.py)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from pipeline.config_base import StrictConfig
from pipeline.decontam.benchmarks import BenchmarkConfig, adapter, read_items
from pipeline.decontam.overlap import answers_agree, ngram_size, numbers_contained, resolved_answer
from pipeline.dedupe.imagehash import hamming, phash_bytes
from pipeline.dedupe.minhash import band_keys, text_signatures
from pipeline.index import GlobalStep, IndexedStage
from pipeline.io import write_parquet_atomic
from pipeline.stage import ShardResult
from pipeline.text import normalise, numbers_of, problem_text, word_shingle_hashes

ITEMS_SCHEMA = pa.schema(
    [
        ("benchmark", pa.string()),
        ("source_id", pa.string()),
        ("question", pa.string()),  # normalised question: its n-grams are what coverage counts
        ("text", pa.string()),  # normalised question + choices: what MinHash compares
        ("answer", pa.string()),  # resolved, normalised gold answer
        ("numbers", pa.list_(pa.string())),
        ("image_phash", pa.list_(pa.binary())),  # empty: the benchmark ships no images, text decides
    ]
)


class DecontamConfig(StrictConfig):
    benchmarks: list[BenchmarkConfig] = Field(
        default_factory=lambda: [
            BenchmarkConfig(name="mathvista_testmini", format="mathvista", path="mathvista/testmini.json"),
            BenchmarkConfig(name="mathvision_testmini", format="mathvision", path="mathvision/testmini.jsonl"),
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
    # Images, hashed as dedupe hashes them: a resized / recompressed copy stays within ~12 of 256 bits.
    phash_size: int = 16
    image_max_distance: int = 12


def decontam_schema(config: DecontamConfig) -> pa.Schema:
    return pa.schema(
        [("problem_id", pa.string())]
        + [(f"contaminated_{b.name}", pa.bool_()) for b in config.benchmarks]
        + [
            ("contamination_score", pa.float32()),  # best max(n-gram coverage, MinHash Jaccard) over all items
            ("contamination_match", pa.string()),  # "<benchmark>:<source_id>" of that item; null: no candidate
        ]
    )


class BenchmarkSnapshot(GlobalStep[DecontamConfig]):
    """Every benchmark's test items, normalised once; keyed by the benchmark files, not by any shard."""

    name = "decontam"

    def __init__(self, config: DecontamConfig, data_root: Path | str):
        super().__init__(config)
        self.data_root = Path(data_root)

    def identity(self) -> list:
        return [super().identity(), [adapter(b, self.data_root).identity() for b in self.config.benchmarks]]

    def build(self, run_dir: Path, shards: Sequence[str], staging: Path) -> dict:
        rows, counts, skipped = [], {}, {}
        for benchmark in self.config.benchmarks:
            items, reasons = read_items(benchmark, self.data_root, self.config.phash_size)
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
                        "image_phash": item.image_phashes,
                    }
                )
        write_parquet_atomic(staging / "items.parquet", pa.Table.from_pylist(rows, schema=ITEMS_SCHEMA))
        return {"items": counts, "skipped": skipped}


def phash_array(hashes: list[bytes]) -> np.ndarray:
    """(images, words) uint64, the layout `hamming` compares."""
    words = np.frombuffer(b"".join(hashes), dtype=">u8").astype(np.uint64)
    return words.reshape(len(hashes), -1) if hashes else words.reshape(0, 0)


class BenchmarkIndex:
    """Lookups over the benchmark items: n-gram -> items, LSH band key -> items, per-item facts."""

    def __init__(self, items: pa.Table, config: DecontamConfig):
        self.config = config
        columns = items.to_pydict()
        self.labels = [f"{b}:{s}" for b, s in zip(columns["benchmark"], columns["source_id"])]
        self.benchmark = columns["benchmark"]
        self.answer = columns["answer"]
        self.numbers = columns["numbers"]
        self.phashes = [phash_array(hashes) for hashes in columns["image_phash"]]
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

    def image_distance(self, item: int, problem_hashes: np.ndarray) -> int | None:
        """Smallest pHash distance between the item's and the problem's images; None: one side has none."""
        ours = self.phashes[item]
        if not len(ours) or not len(problem_hashes):
            return None
        return int(hamming(ours[:, None, :], problem_hashes[None, :, :]).min())

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


class DecontamStage(IndexedStage[DecontamConfig]):
    name = "decontam"
    inputs = ("problems",)

    def __init__(self, config: DecontamConfig, index_dir: Path | str):
        super().__init__(config, index_dir)
        self.output_schema = decontam_schema(config)

    def setup(self) -> dict[str, BenchmarkIndex]:
        return {"index": BenchmarkIndex(pq.read_table(self.index_dir / "items.parquet"), self.config)}  # once per worker

    def process(self, shard: str, inputs: Mapping[str, pa.Table]) -> ShardResult:
        problems = inputs["problems"].select(["problem_id", "question", "choices", "answer", "images"])
        images = problems.column("images")
        problems = problems.select(["problem_id", "question", "choices", "answer"]).to_pydict()
        texts = [normalise(problem_text(q, c)) for q, c in zip(problems["question"], problems["choices"])]
        rows = len(texts)
        names = [b.name for b in self.config.benchmarks]
        flags = {name: [False] * rows for name in names}
        best: list[tuple[float, str | None]] = [(0.0, None)] * rows
        stats: Counter[str] = Counter()
        index = self.resources["index"]
        hashes: dict[int, np.ndarray] = {}  # decoded only for rows whose text matched an item with images

        def image_hashes(row: int) -> np.ndarray:
            if row not in hashes:
                blobs = [phash_bytes(i["bytes"], self.config.phash_size).astype(">u8").tobytes() for i in images[row].as_py() or []]
                hashes[row] = phash_array(blobs)
            return hashes[row]

        for (row, item), (coverage, jaccard) in sorted(index.candidates(texts).items()):
            score = max(coverage, jaccard)
            if score > best[row][0]:
                best[row] = (score, index.labels[item])
            if coverage < index.coverage_threshold[item] and jaccard < self.config.jaccard_threshold:
                continue
            same_problem = numbers_contained(index.numbers[item], numbers_of(texts[row])) and answers_agree(
                resolved_answer(problems["answer"][row], problems["choices"][row]), index.answer[item]
            )
            if self.config.check_answer_and_numbers and not same_problem:
                stats["text_match_with_other_answer_or_numbers"] += 1
                continue
            distance = index.image_distance(item, image_hashes(row)) if len(index.phashes[item]) else None
            if distance is not None and distance > self.config.image_max_distance:
                stats["text_match_with_other_image"] += 1
            else:
                flags[index.benchmark[item]][row] = True
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
