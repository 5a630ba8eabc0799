"""The source-format registry: one list of formats, from which configs are checked and adapters made."""

from __future__ import annotations

import json

import pytest

from pipeline.config import load_config
from pipeline.config_base import ConfigError
from pipeline.decontam.benchmarks import BenchmarkConfig
from pipeline.ingest.sources import ADAPTERS, ProblemFields, RawRecord, SourceConfig, make_adapter, registry
from pipeline.ingest.sources.readers import JsonLinesAdapter
from pipeline.ingest.stage import IngestConfig, IngestStage
from pipeline.io import StageDir
from pipeline.stage import run_shard


def test_an_unknown_format_names_its_nearest_spelling_and_every_registered_format():
    with pytest.raises(ConfigError) as error:
        load_config(overrides=["sources=[{name: mine, format: jsonlines, path: x.jsonl, domain: d}]"])
    message = str(error.value)
    assert "sources[0].format" in message and "unknown source format 'jsonlines' (did you mean jsonl?)" in message
    assert f"known formats: {', '.join(sorted(ADAPTERS))}" in message
    with pytest.raises(ValueError, match="known formats: "):
        BenchmarkConfig(name="bench", format="parquet", path="p")


class _TsvAdapter(JsonLinesAdapter):
    """A format that is not registered: question<TAB>answer lines, read by the JSON-lines machinery."""

    def _records(self, start, stop):
        for number, line in self._lines(start, stop):
            yield RawRecord(str(number), line.decode("utf-8").split("\t"))

    def to_fields(self, record: RawRecord) -> ProblemFields:
        question, answer = record.value
        return ProblemFields(record.source_id, question, answer, "integer", "free_form")


def test_a_new_format_is_one_adapter_class_and_one_registry_entry(tmp_path, monkeypatch):
    rows = [("What is 2 + 3?", "5"), ("What is 4 * 4?", "16"), ("What is 9 - 7?", "2")]
    (tmp_path / "sums.tsv").write_text("".join(f"{q}\t{a}\n" for q, a in rows))
    config = {"name": "sums", "format": "tsv", "path": "sums.tsv", "domain": "arithmetic_word"}
    with pytest.raises(ValueError, match="unknown source format 'tsv'"):
        SourceConfig(**config)

    monkeypatch.setitem(registry.ADAPTERS, "tsv", _TsvAdapter)
    source = SourceConfig(**config)
    assert isinstance(make_adapter(source, tmp_path), _TsvAdapter)
    stage = IngestStage(IngestConfig(), [source], tmp_path)
    for shard in stage.shards():
        run_shard(stage, tmp_path / "run", shard)
    written = [row for _, table in StageDir(tmp_path / "run", "problems").iter_tables() for row in table.to_pylist()]
    assert [(row["question"], row["answer"], row["source_id"]) for row in written] == [(q, a, str(i)) for i, (q, a) in enumerate(rows)]
    assert json.loads(written[0]["metadata"]) == {}
