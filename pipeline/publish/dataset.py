"""Write a finished set as a Hugging Face dataset folder: Parquet shards + README.md card + plots.

The Parquet files carry the `datasets` feature metadata, so `datasets.load_dataset(folder)` decodes
images without any loading script. The folder is built beside its final place and renamed into it.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from pipeline.config_base import StrictConfig
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


def _with_features(table: pa.Table, schema: pa.Schema) -> pa.Table:
    features = hf_features(schema)
    metadata = {b"huggingface": json.dumps({"info": {"features": features.to_dict()}}).encode()}
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


def _plot_cluster_sizes(sizes: dict[str, int], title: str, path: Path) -> None:
    ordered = sorted(sizes.values(), reverse=True)
    with _figure(path, title, f"cluster, by size ({len(ordered)} clusters)", "problems") as axis:
        axis.bar(range(len(ordered)), ordered, color="#8172b2")


def _plot_histogram(values: list[float], title: str, path: Path) -> None:
    with _figure(path, title, "pass rate", "problems") as axis:
        axis.hist(values, bins=10, range=(0.0, 1.0), color="#55a868", edgecolor="white")


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


def publish_dataset(
    run_dir: Path,
    stage: str,
    schema: pa.Schema,
    config: PublishConfig,
    stage_stats: list[dict],
    shards: list[str],
) -> Path:
    """Write `<out_dir>/<stage>/` from the stage's finished shards and return its path."""
    out_root = Path(config.out_dir) if config.out_dir else Path(run_dir) / "datasets"
    final = out_root / stage
    staging = out_root / f".{stage}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "data").mkdir(parents=True)
    source_dir = StageDir(run_dir, stage)
    non_empty = [s for s in shards if source_dir.marker(s).rows > 0]
    by_source: Counter[str] = Counter()
    by_domain: Counter[str] = Counter()
    pass_rates: list[float] = []
    groups = file_groups([source_dir.shard_path(s).stat().st_size for s in non_empty], config.max_file_bytes)
    for index, group in enumerate(groups):
        name = f"train-{index:05d}-of-{len(groups):05d}.parquet"
        options = dict(PARQUET_OPTIONS)
        row_group_size = options.pop("row_group_size")  # an option of each write, not of the writer
        with pq.ParquetWriter(staging / "data" / name, _with_features(schema.empty_table(), schema).schema, **options) as writer:
            for position in group:  # one stage shard in memory at a time
                table = source_dir.read(non_empty[position])
                by_source.update(table.column("source").to_pylist())
                by_domain.update(table.column("domain").to_pylist())
                if "pass_rate" in table.column_names:
                    pass_rates += table.column("pass_rate").to_pylist()
                writer.write_table(_with_features(table, schema), row_group_size=row_group_size)
    rows = sum(by_source.values())
    plots = []
    if rows:
        _plot_counts(dict(by_domain), f"{stage}: rows by domain", staging / "domains.png")
        _plot_counts(dict(by_source), f"{stage}: rows by source", staging / "sources.png")
        plots += ["domains.png", "sources.png"]
    if pass_rates:
        _plot_histogram(pass_rates, f"{stage}: difficulty", staging / "difficulty.png")
        plots.append("difficulty.png")
    clusters = next((s["composition"]["problem_cluster"] for s in stage_stats if "problem_cluster" in s.get("composition", {})), None)
    if clusters:
        _plot_cluster_sizes(clusters, f"{stage}: problems per embedding cluster", staging / "clusters.png")
        plots.append("clusters.png")
    environment = Environment(loader=FileSystemLoader(config.card_templates), undefined=StrictUndefined, keep_trailing_newline=True)
    card = environment.get_template(f"{stage}.md.j2").render(
        rows=rows,
        files=len(groups),
        by_source=dict(sorted(by_source.items())),
        by_domain=dict(sorted(by_domain.items())),
        stages=stage_stats,
        plots=plots,
    )
    (staging / "README.md").write_text(card)
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return final


def published_rows(folder: Path) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in sorted((folder / "data").glob("*.parquet")))
