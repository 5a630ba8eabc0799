"""Index folders of global steps: `<run>/<name>_index/<key>/`, complete once `manifest.json` is there.

A global step (dedupe clustering, the decontamination benchmark snapshot, diversity centroids) builds
its folder under a temporary name and renames it into place, so a crash leaves either a complete
index or nothing a rerun would trust; `<key>` hashes everything the index depends on, so the same
inputs and config find the finished index and skip the work.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.io import write_json_atomic

MANIFEST = "manifest.json"


def index_path(run_dir: Path | str, name: str, key: str) -> Path:
    return Path(run_dir) / f"{name}_index" / key


def is_built(index_dir: Path) -> bool:
    return (index_dir / MANIFEST).exists()


def load_manifest(index_dir: Path | str) -> dict[str, Any]:
    return json.loads((Path(index_dir) / MANIFEST).read_text())


@contextmanager
def building(index_dir: Path) -> Iterator[Path]:
    """Yields a staging folder to fill; on success it becomes `index_dir`. The body must write the
    manifest last, through `write_manifest`."""
    staging = index_dir.parent / f".{index_dir.name}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        if not is_built(staging):
            raise RuntimeError(f"index {index_dir.name}: the build wrote no {MANIFEST}")
        os.replace(staging, index_dir)
    except OSError:
        if not is_built(index_dir):
            raise
    finally:  # another process may have finished the same index first: theirs is identical
        shutil.rmtree(staging, ignore_errors=True)


def write_manifest(staging: Path, manifest: dict[str, Any]) -> None:
    write_json_atomic(staging / MANIFEST, manifest)
