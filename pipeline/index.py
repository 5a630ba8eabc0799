"""Global steps: an index built once over all shards (dedupe clusters, the benchmark snapshot, k-means
centroids, selection plans), and the stage base that reads one.

An index lives in `<run>/<name>_index/<key>/`; `<key>` hashes the step's identity (its config without
runtime knobs, plus whatever else decides it) and the content hashes of its upstream shards, so the same
inputs find the finished index and skip the work, and anything else builds a new one. The folder is built
under a temporary name and renamed into place with `manifest.json` written last, so a crash leaves either
a complete index or nothing a rerun would trust.
"""

from __future__ import annotations

import json
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from pipeline.config_base import identity
from pipeline.io import StageDir, file_sha256, stable_hash, write_json_atomic
from pipeline.stage import C, Stage

MANIFEST = "manifest.json"
G = TypeVar("G", bound=BaseModel)  # a global step's config type


def load_manifest(index_dir: Path | str) -> dict[str, Any]:
    return json.loads((Path(index_dir) / MANIFEST).read_text())


@contextmanager
def _building(index_dir: Path) -> Iterator[Path]:
    """Yields a staging folder to fill; once the manifest is in it, it becomes `index_dir`."""
    staging = index_dir.parent / f".{index_dir.name}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        os.replace(staging, index_dir)
    except OSError:
        if not (index_dir / MANIFEST).exists():
            raise
    finally:  # another process may have finished the same index first: theirs is identical
        shutil.rmtree(staging, ignore_errors=True)


class GlobalStep(ABC, Generic[G]):
    name: ClassVar[str]  # the index folder is <run>/<name>_index/<key>/
    upstream: tuple[str, ...] = ()  # stages whose finished shards the index is built from (per instance where config decides)

    def __init__(self, config: G):
        self.config = config

    def identity(self) -> Any:
        """What, besides the upstream shards, decides the index."""
        return identity(self.config)

    def upstream_hashes(self, run_dir: Path, shards: Sequence[str]) -> list:
        """Per shard, the content hash of each upstream stage's output; an unfinished one is an error."""
        hashes = []
        for shard in shards if self.upstream else ():
            content = []
            for stage in self.upstream:
                marker = StageDir(run_dir, stage).marker(shard)
                if marker is None:
                    raise FileNotFoundError(f"{self.name}: upstream shard {stage}/{shard} is not finished")
                content.append(marker.content_sha256)
            hashes.append([shard, content])
        return hashes

    @abstractmethod
    def build(self, run_dir: Path, shards: Sequence[str], staging: Path) -> dict[str, Any]:
        """Write the index files into `staging`; returns what the manifest says about them (counts, stats)."""

    def prepare(self, run_dir: Path | str, shards: Sequence[str]) -> Path:
        """The finished index folder over `shards`, built unless an identical one exists."""
        run_dir, shards = Path(run_dir), list(shards)
        key = stable_hash([self.name, self.identity(), self.upstream_hashes(run_dir, shards)])
        index_dir = run_dir / f"{self.name}_index" / key
        if (index_dir / MANIFEST).exists():
            return index_dir
        with _building(index_dir) as staging:
            facts = self.build(run_dir, shards, staging)
            files = {str(p.relative_to(staging)): file_sha256(p) for p in sorted(staging.rglob("*")) if p.is_file()}
            write_json_atomic(staging / MANIFEST, {**facts, "key": key, "files": files, "content_hash": stable_hash(files)})
        return index_dir


class IndexedStage(Stage[C]):
    """A per-shard stage that reads a global step's index: what it writes depends on the index's content."""

    def __init__(self, config: C, index_dir: Path | str):
        super().__init__(config)
        self.index_dir = Path(index_dir)
        self.manifest = load_manifest(self.index_dir)

    def fingerprint(self) -> str:
        return stable_hash([super().fingerprint(), self.manifest["content_hash"]])
