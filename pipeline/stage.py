"""The stage contract and the shard runner every flow uses.

A stage is a small class with a typed config and one method, `process`, that maps the same-named
shard of its upstream stages to one output shard and returns its stats. `run_shard` adds
everything a stage must not care about: skipping finished shards, atomic output, quarantine, markers.

Stats share one vocabulary, so every card reads the same keys: `rows_in` (rows of the main input,
filled by the runner), `rows_out` (runner), `quarantined_<reason>` (runner, from the quarantined rows),
`dropped_<reason>` (judged and left out), `skipped_<reason>` (passed through without the stage's work);
anything else is a stage's own count.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

import pyarrow as pa
from pydantic import BaseModel

from pipeline.config_base import identity
from pipeline.io import QuarantinedRow, ShardMarker, StageDir, quarantine_dir, quarantine_table, stable_hash, write_json_atomic
from schemas import validate_table

T = TypeVar("T")
log = logging.getLogger(__name__)
REASON_KINDS = ("dropped", "skipped", "quarantined")  # stats `<kind>_<reason>`: rows by why


@dataclass
class ShardResult:
    table: pa.Table
    quarantined: list[QuarantinedRow] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)


class Stage(ABC):
    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]] = ()  # upstream stages whose same-named shard `process` receives
    main_input: ClassVar[str | None] = None  # whose rows `rows_in` counts; None: the first input
    output_schema: ClassVar[pa.Schema]

    def __init__(self, config: BaseModel | None):
        self.config = config

    def fingerprint(self) -> str:
        """What, besides the input shards, decides this stage's output."""
        return stable_hash([self.name, identity(self.config)])

    @abstractmethod
    def process(self, shard: str, inputs: Mapping[str, pa.Table]) -> ShardResult: ...

    def close(self) -> None:
        """Release what the stage started for its shards (engines, worker pools); the flow calls it."""


def shard_config_hash(stage: Stage, run_dir: Path, shard: str) -> str:
    upstream = []
    for name in stage.inputs:
        marker = StageDir(run_dir, name).marker(shard)
        if marker is None:
            raise FileNotFoundError(f"{stage.name}: upstream shard {name}/{shard} is not finished")
        upstream.append(marker.content_sha256)
    return stable_hash([stage.fingerprint(), upstream])


def run_shard(stage: Stage, run_dir: Path | str, shard: str) -> ShardMarker:
    """Compute one shard unless an identical run already finished it."""
    run_dir = Path(run_dir)
    out = StageDir(run_dir, stage.name)
    config_hash = shard_config_hash(stage, run_dir, shard)
    if out.is_done(shard, config_hash):
        return out.marker(shard)
    started = time.perf_counter()
    inputs = {name: StageDir(run_dir, name).read(shard) for name in stage.inputs}
    result = stage.process(shard, inputs)
    validate_table(result.table, stage.output_schema)
    if inputs:
        result.stats.setdefault("rows_in", inputs[stage.main_input or stage.inputs[0]].num_rows)
    result.stats["rows_out"] = result.table.num_rows
    result.stats.update(f"quarantined_{row.reason}" for row in result.quarantined)
    result.stats["milliseconds"] = int(1000 * (time.perf_counter() - started))
    # Quarantine first: a marker must never exist for a shard whose rejects were not saved.
    quarantine_dir(run_dir, stage.name).write(
        shard, quarantine_table(stage.name, shard, result.quarantined), config_hash, {}
    )
    return out.write(shard, result.table, config_hash, result.stats)


def summarise_stage(run_dir: Path | str, stage_name: str, shards: Sequence[str]) -> dict:
    """Write `<stage>/stats.json`: counts summed over shards, and the dropped, skipped and quarantined
    rows by reason (each `<kind>_<reason>` count under its kind)."""
    out = StageDir(run_dir, stage_name)
    totals: Counter[str] = Counter()
    for shard in shards:
        marker = out.marker(shard)
        if marker is None:
            raise FileNotFoundError(f"{stage_name}/{shard} has no completion marker")
        totals.update(marker.stats)
    totals.pop("milliseconds", None)  # timings are run metadata, kept in the markers, not in stats
    summary = {"stage": stage_name, "shards": len(shards), "counts": dict(sorted(totals.items()))}
    for kind in REASON_KINDS:
        summary[kind] = {k: v for k, v in summary["counts"].items() if k.startswith(f"{kind}_")}
    write_json_atomic(out.path / "stats.json", summary)
    return summary


# Values that unpickled copies of a SharedResource built in this process, by the recipe's key.
_PROCESS_RESOURCES: dict[str, object] = {}
_PROCESS_LOCK = threading.Lock()


def build_logged(factory: Callable[[], T]) -> T:
    """Build a per-process resource and say so: a cluster run's logs show one build per worker."""
    started = time.perf_counter()
    value = factory()
    name = getattr(factory, "func", factory).__qualname__
    log.info("shared resource %s built in process %d (%.1f s)", name, os.getpid(), time.perf_counter() - started)
    return value


class SharedResource(Generic[T]):
    """Built on first use and shared by the shard threads of a stage (one engine, one worker pool).

    When a stage is pickled for Dask/Ray workers only the recipe travels, once per task; the copies
    that land in one worker process find the value the first one built there, so a worker builds it
    once, not once per shard task.
    """

    def __init__(self, factory: Callable[[], T], key: str | None = None):
        self.factory = factory
        self.key = key  # set on unpickled copies: their value lives in the process, not in the copy
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        if self.key is None:
            with self._lock:
                if self._value is None:
                    self._value = build_logged(self.factory)
                return self._value
        with _PROCESS_LOCK:
            if self.key not in _PROCESS_RESOURCES:
                _PROCESS_RESOURCES[self.key] = build_logged(self.factory)
            return _PROCESS_RESOURCES[self.key]

    def close(self) -> None:
        """Close the value if it was built; the next `get` builds a fresh one."""
        if self.key is None:
            with self._lock:
                value, self._value = self._value, None
        else:
            with _PROCESS_LOCK:
                value = _PROCESS_RESOURCES.pop(self.key, None)
        if value is not None:
            value.close()

    def __getstate__(self) -> dict:
        # The recipe is its key: the same stage sent twice (or rebuilt by a rerun) shares one value.
        # Its repr names the function and its arguments (configs print their fields); no pickling needed.
        key = self.key or hashlib.sha256(repr(self.factory).encode()).hexdigest()
        return {"factory": self.factory, "key": key}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["factory"], state["key"])
