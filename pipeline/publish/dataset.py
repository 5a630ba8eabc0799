"""Write a finished set as a Hugging Face dataset folder: Parquet shards + README.md card + plots.

The Parquet files carry the `datasets` feature metadata, so `datasets.load_dataset(folder)` decodes
images without any loading script. The folder is built beside its final place and renamed into it.
"""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from pipeline.config_base import StrictConfig
from pipeline.generate.cost import total_tokens
from pipeline.io import PARQUET_OPTIONS, StageDir
from pipeline.paths import REPO_ROOT
from schemas import hf_features


class PublishConfig(StrictConfig):
    out_dir: Path | None = None  # default: <run>/datasets
    card_templates: Path = REPO_ROOT / "data_cards"
    cold_start_repo_id: str | None = None  # e.g. "org/mm-coldstart"; None: local folder only
    rl_repo_id: str | None = None
    push_to_hub: bool = False
    dry_run: bool = True  # with push_to_hub: write upload_manifest.json instead of uploading
    private: bool = True
    token_env: str = "HF_TOKEN"
    max_file_bytes: int = 500 * 2**20  # per published Parquet file (the Hub's hard limit is 50 GB)
    trainer_exports: bool = True  # also write LLaMA-Factory / verl layouts beside the folders (publish/exports.py)


EMPTY_REASON_KEY = b"mmr_empty_reason"  # Parquet key-value metadata of an empty set's file


def _with_features(table: pa.Table, schema: pa.Schema, empty_reason: str | None = None) -> pa.Table:
    features = hf_features(schema)
    metadata = {b"huggingface": json.dumps({"info": {"features": features.to_dict()}}).encode()}
    if empty_reason:
        metadata[EMPTY_REASON_KEY] = empty_reason.encode()
    return table.replace_schema_metadata(metadata)


@contextmanager
def _figure(path: Path, title: str, xlabel: str | None = None, ylabel: str = "rows"):
    """A small Agg figure saved to `path` without a version string: identical runs, identical bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3))
    yield axis
    axis.set_title(title)
    axis.set_ylabel(ylabel)
    if xlabel:
        axis.set_xlabel(xlabel)
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)


def _plot_counts(counts: dict[str, int], title: str, path: Path) -> None:
    with _figure(path, title) as axis:
        names = sorted(counts)
        axis.bar(names, [counts[n] for n in names], color="#4c72b0")
        if len(names) > 4:
            axis.tick_params(axis="x", labelrotation=60, labelsize=7)


def _plot_cluster_sizes(sizes: dict[str, int], title: str, path: Path) -> None:
    ordered = sorted(sizes.values(), reverse=True)
    with _figure(path, title, f"cluster, by size ({len(ordered)} clusters)", "problems") as axis:
        axis.bar(range(len(ordered)), ordered, color="#8172b2")


def _plot_histograms(groups: Mapping[str, Sequence[float]], title: str, xlabel: str, path: Path) -> None:
    """One outlined histogram per group (teacher) on shared bins."""
    with _figure(path, title, xlabel) as axis:
        for name in sorted(groups):
            axis.hist(groups[name], bins=20, histtype="step", linewidth=1.5, label=f"{name} ({len(groups[name])})")
        axis.legend(fontsize=7)


def _plot_pass_rates(bins: dict[str, Counter[int]], title: str, path: Path) -> None:
    """Rows per pass-rate bin, one outline per source: the card's table, drawn."""
    edges = np.linspace(0.0, 1.0, PASS_RATE_BINS + 1)
    with _figure(path, title, "pass rate") as axis:
        for name in sorted(bins):
            counts = [bins[name][i] for i in range(PASS_RATE_BINS)]
            axis.stairs(counts, edges, linewidth=1.5, label=f"{name} ({sum(counts)})")
        axis.legend(fontsize=7)


def size_category(rows: int) -> str:
    """The Hub's `size_categories` bucket of a row count."""
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if rows < bound:
            return name
    return "10M<n<100M"


def hub_license(licenses: dict[str, str | None]) -> str:
    """One Hub license id when every source shares it, else "other" (the card lists each source's)."""
    distinct = {(license or "unknown").lower() for license in licenses.values()}
    return distinct.pop() if len(distinct) == 1 else "other"


@lru_cache(maxsize=1)
def _token_counter():
    """The packaged MiniLM WordPiece tokenizer: a fixed, offline yardstick for CoT lengths. Its tokenizer.json
    pads and truncates every text to 128 tokens (MiniLM's input width): both are switched off here, and a reply
    that writes "[PAD]" or "[CLS]" (a CoT naming a polygon) is text, not one special token."""
    from tokenizers import Tokenizer

    from pipeline.score.diversity import DiversityStageConfig, model_folder

    tokenizer = Tokenizer.from_file(str(model_folder(DiversityStageConfig()) / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.encode_special_tokens = True
    return tokenizer


# Tokenising every reply was 90% of publishing (0.7 ms a 2,000-character CoT); the median and p90 need only a
# sample: every k-th row of the set, k = ceil(rows / COT_SAMPLE) (every row up to COT_SAMPLE rows).
COT_SAMPLE = 20_000


def token_lengths(texts: list[str]) -> list[int]:
    """WordPiece tokens per text, without [CLS] / [SEP]."""
    return [len(encoding.ids) for encoding in _token_counter().encode_batch(texts, add_special_tokens=False)]


PASS_RATE_BINS = 10


def pass_rate_bin(rate: float) -> int:
    """The tenth of [0, 1] a pass rate falls in, 1.0 in the last; rounding first so that 3/10 is in [0.3, 0.4),
    where float arithmetic (and np.histogram's float edges) would put it below 0.3."""
    return min(math.floor(round(rate * PASS_RATE_BINS, 9)), PASS_RATE_BINS - 1)


def pass_rate_label(index: int) -> str:
    low, high = index / PASS_RATE_BINS, (index + 1) / PASS_RATE_BINS
    return f"[{low:.1f}, {high:.1f}" + ("]" if index == PASS_RATE_BINS - 1 else ")")


class _Composition:
    """Counts a card shows, accumulated shard by shard over a set of `rows` rows."""

    def __init__(self, rows: int) -> None:
        self.by: dict[str, Counter[str]] = {name: Counter() for name in ("source", "domain", "problem_type", "teacher")}
        self.images_per_row: Counter[int] = Counter()
        self.pass_rate_bins: dict[str, Counter[int]] = {}  # by source; null pass rates are not binned
        self.unknown_pass_rate = 0
        self.cot_tokens: dict[str, list[int]] = {}
        self.cot_every = max(1, math.ceil(rows / COT_SAMPLE))
        self._offset = 0  # rows of the set before the next table

    def add(self, table: pa.Table) -> None:
        for name, counter in self.by.items():
            if name in table.column_names:
                counter.update("unassigned" if value is None else value for value in table.column(name).to_pylist())
        self.images_per_row.update(pc.fill_null(pc.list_value_length(table.column("images")), 0).to_pylist())
        if "pass_rate" in table.column_names:
            for source, rate in zip(table.column("source").to_pylist(), table.column("pass_rate").to_pylist()):
                if rate is None:
                    self.unknown_pass_rate += 1
                else:
                    self.pass_rate_bins.setdefault(source, Counter())[pass_rate_bin(rate)] += 1
        if "messages" in table.column_names:
            first = -self._offset % self.cot_every  # the set's rows 0, k, 2k, ... that fall in this table
            sample = table.select(["teacher", "messages"]).take(np.arange(first, table.num_rows, self.cot_every))
            replies = [messages[-1]["content"] for messages in sample.column("messages").to_pylist()]
            for teacher, length in zip(sample.column("teacher").to_pylist(), token_lengths(replies)):
                self.cot_tokens.setdefault(teacher, []).append(length)
        self._offset += table.num_rows

    def pass_rate_histogram(self) -> dict[str, int]:
        """Rows per pass-rate bin over all sources (every bin, empty ones too), then rows without a pass rate."""
        total = sum(self.pass_rate_bins.values(), Counter())
        histogram = {pass_rate_label(i): total[i] for i in range(PASS_RATE_BINS)}
        return histogram | {"no pass rate": self.unknown_pass_rate}


def file_groups(shard_bytes: list[int], max_bytes: int) -> list[list[int]]:
    """Consecutive shards packed into files of at most `max_bytes` each (a bigger shard gets its own):
    few files of a few hundred MB suit the Hub, which caps file size and files per folder."""
    groups: list[list[int]] = []
    size = 0
    for index, nbytes in enumerate(shard_bytes):
        if not groups or size + nbytes > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(index)
        size += nbytes
    return groups


def _statistic(value: float) -> str:
    """To one decimal, without a trailing ".0"."""
    return f"{float(value):.1f}".removesuffix(".0")


def publish_dataset(
    run_dir: Path,
    stage: str,
    schema: pa.Schema,
    config: PublishConfig,
    stage_stats: list[dict],
    shards: list[str],
    licenses: dict[str, str | None],
    empty_reason: str | None = None,
    cost: dict | None = None,
) -> Path:
    """Write `<out_dir>/<stage>/` from the stage's finished shards and return its path.

    `licenses` maps each source to its license (from the source config); the card lists those the set uses.
    `cost` (pipeline.generate.cost) puts the run's generation requests and tokens on the card.
    A set without rows is still published: one Parquet file with the features and no row group, and a card
    that says why it is empty (`empty_reason`, see `pipeline.publish.empty`), also kept in the file's
    metadata for tools (`published_empty_reason`).
    """
    out_root = Path(config.out_dir) if config.out_dir else Path(run_dir) / "datasets"
    final = out_root / stage
    staging = out_root / f".{stage}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "data").mkdir(parents=True)
    source_dir = StageDir(run_dir, stage)
    shard_rows = {s: source_dir.finished(s).rows for s in shards}
    non_empty = [s for s in shards if shard_rows[s] > 0]
    rows = sum(shard_rows.values())
    empty_reason = None if rows else (empty_reason or "no rows were selected")
    composition = _Composition(rows)
    # An empty set still gets one file, with no row group: the schema, readable by any Parquet reader.
    groups = file_groups([source_dir.shard_path(s).stat().st_size for s in non_empty], config.max_file_bytes) or [[]]
    for index, group in enumerate(groups):
        name = f"train-{index:05d}-of-{len(groups):05d}.parquet"
        options = dict(PARQUET_OPTIONS)
        row_group_size = options.pop("row_group_size")  # an option of each write, not of the writer
        file_schema = _with_features(schema.empty_table(), schema, empty_reason).schema
        with pq.ParquetWriter(staging / "data" / name, file_schema, **options) as writer:
            for position in group:  # one stage shard in memory at a time
                table = source_dir.read(non_empty[position])
                composition.add(table)
                writer.write_table(_with_features(table, schema), row_group_size=row_group_size)
    by_source = composition.by["source"]
    plots = []
    if rows:
        for key, label in (("domain", "domain"), ("source", "source"), ("problem_type", "problem type"), ("teacher", "teacher")):
            if composition.by[key]:
                _plot_counts(dict(composition.by[key]), f"{stage}: rows by {label}", staging / f"{key}s.png")
                plots.append(f"{key}s.png")
    if composition.pass_rate_bins:
        _plot_pass_rates(composition.pass_rate_bins, f"{stage}: policy pass rate, by source", staging / "difficulty.png")
        plots.append("difficulty.png")
    if composition.cot_tokens:
        _plot_histograms(composition.cot_tokens, f"{stage}: chain-of-thought length, by teacher", "tokens (MiniLM WordPiece)", staging / "cot_tokens.png")
        plots.append("cot_tokens.png")
    clusters = next((s["composition"]["problem_cluster"] for s in stage_stats if "problem_cluster" in s.get("composition", {})), None)
    if clusters:
        _plot_cluster_sizes(clusters, f"{stage}: problems per embedding cluster", staging / "clusters.png")
        plots.append("clusters.png")
    with_images = rows - composition.images_per_row.get(0, 0)
    used_licenses = {source: licenses.get(source) for source in sorted(by_source)}
    environment = Environment(loader=FileSystemLoader(config.card_templates), undefined=StrictUndefined, keep_trailing_newline=True)
    card = environment.get_template(f"{stage}.md.j2").render(
        rows=rows,
        files=len(groups),
        empty_reason=empty_reason,
        by_source=dict(sorted(by_source.items())),
        by_domain=dict(sorted(composition.by["domain"].items())),
        by_problem_type=dict(sorted(composition.by["problem_type"].items(), key=lambda kv: (-kv[1], str(kv[0])))),
        by_teacher=dict(sorted(composition.by["teacher"].items())),
        images_per_row=dict(sorted(composition.images_per_row.items())),
        image_share=with_images / rows if rows else 0.0,
        pass_rates=composition.pass_rate_histogram() if "pass_rate" in schema.names else {},
        cot_tokens={
            teacher: {"median": _statistic(np.median(lengths)), "p90": _statistic(np.percentile(lengths, 90)), "measured": len(lengths)}
            for teacher, lengths in sorted(composition.cot_tokens.items())
        },
        cot_every=composition.cot_every,
        cot_sample=COT_SAMPLE,
        licenses=used_licenses,
        hub={"license": hub_license(used_licenses), "size_category": size_category(rows)},
        stages=stage_stats,
        cost=cost,
        cost_total=total_tokens(cost) if cost else 0,
        plots=plots,
    )
    (staging / "README.md").write_text(card)
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return final


def published_rows(folder: Path | str) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in sorted((Path(folder) / "data").glob("*.parquet")))


def published_empty_reason(folder: Path | str) -> str | None:
    """Why a published set has no rows (None: it has rows, or it was published before empty sets said why)."""
    files = sorted((Path(folder) / "data").glob("*.parquet"))
    if not files or published_rows(folder):
        return None
    reason = pq.read_schema(files[0]).metadata.get(EMPTY_REASON_KEY)
    return reason.decode() if reason else None
