"""A shard's generation journal: every result as it arrives, so a killed run resends only what it lacks.

JSON lines, flushed and fsynced in chunks, then compacted into one zstd Parquet file when the shard is written; a
torn last line (a kill mid-write) is cut before appending, and a kill between compaction and removal leaves both
files, which `read_journal` merges.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.generate.base import GenerationResult
from pipeline.io import write_parquet_atomic

JOURNAL_DIR = "_journal"
JOURNAL_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("text", pa.string()),
        ("reasoning", pa.string()),
        ("finish_reason", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("reasoning_tokens", pa.int64()),
        ("error", pa.string()),
    ]
)


def compacted_journal(path: Path) -> Path:
    return path.with_suffix(".parquet")


def read_journal(path: Path) -> dict[str, GenerationResult]:
    """Finished results by request id: the compacted journal's, then the JSON lines appended since; a torn
    last line (killed mid-write) is ignored."""
    results: dict[str, GenerationResult] = {}
    if compacted_journal(path).exists():
        results = {row["request_id"]: GenerationResult(**row) for row in pq.read_table(compacted_journal(path)).to_pylist()}
    if not path.exists():
        return results
    for line in path.read_bytes().splitlines():
        try:
            result = GenerationResult(**json.loads(line))
        except (ValueError, TypeError):
            continue
        results[result.request_id] = result
    return results


def compact_journal(path: Path, results: Mapping[str, GenerationResult]) -> None:
    """Every result of the journal in one compressed Parquet file, written (atomically) before the JSON
    lines are removed: a kill in between leaves both, which `read_journal` merges."""
    rows = [vars(results[request_id]) for request_id in sorted(results)]
    write_parquet_atomic(compacted_journal(path), pa.Table.from_pylist(rows, schema=JOURNAL_SCHEMA))
    path.unlink(missing_ok=True)


def drop_torn_tail(path: Path) -> None:
    """Cut a last line that a kill left without its newline, so appends start on a fresh line."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def append_journal(path: Path, results: list[GenerationResult]) -> None:
    if not results:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as handle:
        for result in results:
            # vars, not asdict: the same flat dict without asdict's recursive copy (35 us a result)
            handle.write(json.dumps(vars(result), ensure_ascii=False).encode("utf-8") + b"\n")
        handle.flush()
        os.fsync(handle.fileno())


