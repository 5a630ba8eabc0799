"""Global steps: built once over all shards, keyed by upstream markers and identity, published atomically."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipeline.config_base import StrictConfig, runtime
from pipeline.index import GlobalStep, IndexedStage, load_manifest
from pipeline.io import StageDir
from pipeline.stage import ShardResult, run_shard


class SumConfig(StrictConfig):
    scale: int = 1
    workers: int = runtime(1)


class TotalIndex(GlobalStep):
    """The scaled sum of every `numbers` shard."""

    name = "total"
    upstream = ("numbers",)
    builds = 0

    def build(self, run_dir, shards, staging):
        TotalIndex.builds += 1
        total = sum(sum(StageDir(run_dir, "numbers").read(s).column("x").to_pylist()) for s in shards)
        (staging / "total.txt").write_text(str(total * self.config.scale))
        return {"shards": len(shards)}


class AddTotal(IndexedStage):
    name = "plus_total"
    inputs = ("numbers",)
    output_schema = pa.schema([("x", pa.int64())])

    def process(self, shard, inputs):
        total = int((self.index_dir / "total.txt").read_text())
        return ShardResult(pa.table({"x": [v + total for v in inputs["numbers"].column("x").to_pylist()]}, schema=self.output_schema))


def write_numbers(run_dir, shard, values):
    StageDir(run_dir, "numbers").write(shard, pa.table({"x": pa.array(values, pa.int64())}), "input", {})


def test_built_once_then_reused_and_keyed_by_upstream_content_and_identity(tmp_path):
    TotalIndex.builds = 0
    write_numbers(tmp_path, "a", [1, 2])
    write_numbers(tmp_path, "b", [3])
    index = TotalIndex(SumConfig()).prepare(tmp_path, ["a", "b"])
    manifest = load_manifest(index)
    assert (index / "total.txt").read_text() == "6" and manifest["shards"] == 2
    assert set(manifest["files"]) == {"total.txt"} and manifest["content_hash"]
    assert TotalIndex(SumConfig(workers=8)).prepare(tmp_path, ["a", "b"]) == index  # a runtime knob: same key
    assert TotalIndex.builds == 1
    assert TotalIndex(SumConfig(scale=2)).prepare(tmp_path, ["a", "b"]) != index
    write_numbers(tmp_path, "b", [4])
    changed = TotalIndex(SumConfig()).prepare(tmp_path, ["a", "b"])
    assert changed != index and (changed / "total.txt").read_text() == "7" and TotalIndex.builds == 3


def test_an_unfinished_upstream_shard_is_named(tmp_path):
    write_numbers(tmp_path, "a", [1])
    with pytest.raises(FileNotFoundError, match=r"total: upstream shard numbers/b is not finished"):
        TotalIndex(SumConfig()).prepare(tmp_path, ["a", "b"])
    assert not (tmp_path / "total_index").exists()


class Broken(TotalIndex):
    def build(self, run_dir, shards, staging):
        (staging / "half.txt").write_text("half")
        raise ZeroDivisionError


def test_a_build_that_fails_half_way_leaves_nothing_behind(tmp_path):
    write_numbers(tmp_path, "a", [1])
    with pytest.raises(ZeroDivisionError):
        Broken(SumConfig()).prepare(tmp_path, ["a"])
    assert not any((tmp_path / "total_index").iterdir())


def test_a_consuming_stage_reruns_when_the_index_content_changes(tmp_path):
    write_numbers(tmp_path, "a", [1])
    write_numbers(tmp_path, "b", [2])
    first = run_shard(AddTotal(None, TotalIndex(SumConfig()).prepare(tmp_path, ["a", "b"])), tmp_path, "a")
    same = run_shard(AddTotal(None, TotalIndex(SumConfig(workers=3)).prepare(tmp_path, ["a", "b"])), tmp_path, "a")
    assert same == first
    scaled = run_shard(AddTotal(None, TotalIndex(SumConfig(scale=10)).prepare(tmp_path, ["a", "b"])), tmp_path, "a")
    assert scaled.config_hash != first.config_hash
    assert StageDir(tmp_path, "plus_total").read("a").column("x").to_pylist() == [31]
