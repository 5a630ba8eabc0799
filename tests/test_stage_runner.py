"""Markers decide what reruns: finished shards never recompute; config or upstream changes do."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import pyarrow as pa
from pydantic import BaseModel

from pipeline.io import StageDir, stable_hash
from pipeline.stage import ShardResult, Stage, run_shard


class DoubleConfig(BaseModel):
    factor: int = 2


class Double(Stage):
    name = "double"
    inputs = ("numbers",)
    output_schema = pa.schema([("x", pa.int64())])
    calls: Counter = Counter()

    def process(self, shard: str, inputs: Mapping[str, pa.Table]) -> ShardResult:
        Double.calls[shard] += 1
        values = [v * self.config.factor for v in inputs["numbers"].column("x").to_pylist()]
        return ShardResult(pa.table({"x": values}, schema=self.output_schema))


def write_numbers(run_dir, shard, values):
    StageDir(run_dir, "numbers").write(shard, pa.table({"x": pa.array(values, pa.int64())}), "input", {})


def test_finished_shards_are_not_recomputed(tmp_path):
    Double.calls.clear()
    for shard in ("a", "b"):
        write_numbers(tmp_path, shard, [1, 2, 3])
        run_shard(Double(DoubleConfig()), tmp_path, shard)
    run_shard(Double(DoubleConfig()), tmp_path, "a")
    run_shard(Double(DoubleConfig()), tmp_path, "b")
    assert Double.calls == Counter(a=1, b=1)
    assert StageDir(tmp_path, "double").read("a").column("x").to_pylist() == [2, 4, 6]


def test_config_or_upstream_change_recomputes_only_what_changed(tmp_path):
    Double.calls.clear()
    for shard in ("a", "b"):
        write_numbers(tmp_path, shard, [1])
        run_shard(Double(DoubleConfig()), tmp_path, shard)
    write_numbers(tmp_path, "a", [5])
    run_shard(Double(DoubleConfig()), tmp_path, "a")
    run_shard(Double(DoubleConfig()), tmp_path, "b")
    assert Double.calls == Counter(a=2, b=1)
    run_shard(Double(DoubleConfig(factor=3)), tmp_path, "b")
    assert StageDir(tmp_path, "double").read("b").column("x").to_pylist() == [3]


def test_a_shard_without_a_valid_marker_is_recomputed(tmp_path):
    Double.calls.clear()
    write_numbers(tmp_path, "a", [1])
    out = StageDir(tmp_path, "double")
    run_shard(Double(DoubleConfig()), tmp_path, "a")
    out.marker_path("a").unlink()  # killed between the data rename and the marker rename
    run_shard(Double(DoubleConfig()), tmp_path, "a")
    out.shard_path("a").write_bytes(b"torn")  # data no longer matches its marker
    run_shard(Double(DoubleConfig()), tmp_path, "a")
    assert Double.calls["a"] == 3 and out.read("a").column("x").to_pylist() == [2]


def test_same_table_gives_identical_bytes(tmp_path):
    table = pa.table({"x": pa.array(range(1000), pa.int64())})
    StageDir(tmp_path / "one", "s").write("a", table, "h", {})
    StageDir(tmp_path / "two", "s").write("a", table, "h", {})
    assert (tmp_path / "one/s/a.parquet").read_bytes() == (tmp_path / "two/s/a.parquet").read_bytes()
    assert stable_hash({"b": 1, "a": [1, 2]}) == stable_hash({"a": [1, 2], "b": 1})
