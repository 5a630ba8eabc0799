"""Sharded Parquet with a completion marker per shard.

A shard is `<run>/<stage>/<shard>.parquet`; it counts as finished only when `<shard>.done` exists,
names the same config hash, and matches the Parquet file's content hash. Both files are written to
a temporary name and renamed into place, data first, so a kill at any point leaves either a finished
shard or nothing that a rerun would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from schemas import QUARANTINE_SCHEMA

# Fixed writer options: the same table always gives the same bytes (determinism across runs).
PARQUET_OPTIONS = dict(compression="zstd", use_dictionary=True, write_statistics=True, row_group_size=4096)
RAW_PREVIEW_CHARS = 2000


def stable_json(value: Any) -> str:
    """The JSON that `stable_hash` digests: sorted keys, no spaces; a list's is its items' joined by ","."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def stable_hash(value: Any, length: int = 16) -> str:
    """Hex digest of a JSON-serialisable value with sorted keys: stable across runs and machines."""
    return json_digest(stable_json(value), length)


def json_digest(payload: str, length: int = 16) -> str:
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:length]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write_bytes(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquet_atomic(path: Path, table: pa.Table) -> None:
    _atomic_write_bytes(path, lambda handle: pq.write_table(table, handle, **PARQUET_OPTIONS))


def write_json_atomic(path: Path, value: Any) -> None:
    text = json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False, default=str) + "\n"
    _atomic_write_bytes(path, lambda handle: handle.write(text.encode("utf-8")))


@dataclass(frozen=True)
class ShardMarker:
    shard: str
    rows: int
    content_sha256: str
    config_hash: str
    stats: dict[str, int] = field(default_factory=dict)


class StageDir:
    """The output folder of one stage in one run."""

    def __init__(self, run_dir: Path | str, stage: str):
        self.run_dir = Path(run_dir)
        self.stage = stage
        self.path = self.run_dir / stage

    def shard_path(self, shard: str) -> Path:
        return self.path / f"{shard}.parquet"

    def marker_path(self, shard: str) -> Path:
        return self.path / f"{shard}.done"

    def marker(self, shard: str) -> ShardMarker | None:
        try:
            return ShardMarker(**json.loads(self.marker_path(shard).read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def finished(self, shard: str) -> ShardMarker:
        """The marker of a shard that must be finished: a clear error, not a None to trip over, where it is not."""
        marker = self.marker(shard)
        if marker is None:
            raise FileNotFoundError(f"{self.stage}/{shard} has no completion marker")
        return marker

    def is_done(self, shard: str, config_hash: str) -> bool:
        marker = self.marker(shard)
        return (
            marker is not None
            and marker.config_hash == config_hash
            and self.shard_path(shard).exists()
            and file_sha256(self.shard_path(shard)) == marker.content_sha256
        )

    def write(self, shard: str, table: pa.Table, config_hash: str, stats: Mapping[str, int]) -> ShardMarker:
        write_parquet_atomic(self.shard_path(shard), table)
        marker = ShardMarker(
            shard=shard,
            rows=table.num_rows,
            content_sha256=file_sha256(self.shard_path(shard)),
            config_hash=config_hash,
            stats=dict(sorted(stats.items())),
        )
        write_json_atomic(self.marker_path(shard), asdict(marker))
        return marker

    def read(self, shard: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.shard_path(shard), columns=columns)

    def done_shards(self) -> list[str]:
        if not self.path.exists():
            return []
        return sorted(p.stem for p in self.path.glob("*.done") if self.shard_path(p.stem).exists())

    def iter_tables(self, columns: list[str] | None = None) -> Iterator[tuple[str, pa.Table]]:
        for shard in self.done_shards():
            yield shard, self.read(shard, columns)

    def total_rows(self) -> int:
        return sum(m.rows for m in (self.marker(s) for s in self.done_shards()) if m)


@dataclass(frozen=True)
class QuarantinedRow:
    source: str
    source_id: str
    reason: str
    detail: str = ""
    raw: Any = None


def _preview(raw: Any) -> str:
    if isinstance(raw, bytes | bytearray):
        raw = f"<{len(raw)} bytes>"
    try:
        text = json.dumps(raw, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(raw)
    return text[:RAW_PREVIEW_CHARS]


def quarantine_table(stage: str, shard: str, rows: Iterable[QuarantinedRow]) -> pa.Table:
    rows = list(rows)
    return pa.table(
        {
            "stage": [stage] * len(rows),
            "shard": [shard] * len(rows),
            "source": [r.source for r in rows],
            "source_id": [r.source_id for r in rows],
            "reason": [r.reason for r in rows],
            "detail": [r.detail[:RAW_PREVIEW_CHARS] for r in rows],
            "raw": [_preview(r.raw) for r in rows],
        },
        schema=QUARANTINE_SCHEMA,
    )


def quarantine_dir(run_dir: Path | str, stage: str) -> StageDir:
    """Quarantine is sharded like the stage so that a resumed shard rewrites only its own rejects."""
    return StageDir(Path(run_dir) / "quarantine", stage)


def read_quarantine(run_dir: Path | str, stage: str) -> pa.Table:
    tables = [t for _, t in quarantine_dir(run_dir, stage).iter_tables()]
    return pa.concat_tables(tables) if tables else QUARANTINE_SCHEMA.empty_table()
