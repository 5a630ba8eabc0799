"""The stage contract and the shard runner every flow uses.

A stage is a small class with a typed config and one method, `process`, that maps the same-named
shard of its upstream stages to one output shard and returns its stats. `run_shard` adds
everything a stage must not care about: skipping finished shards, atomic output, quarantine, markers.

Stats share one vocabulary, so every card reads the same keys: `rows_in` (rows of the main input,
filled by the runner), `rows_out` (runner), `quarantined_<reason>` (runner, from the quarantined rows),
`dropped_<reason>` (judged and left out), `skipped_<reason>` (passed through without the stage's work);
anything else is a stage's own count.

Lifecycle: what a stage needs on a worker (an engine, a verifier pool, an embedding model, a backend client) is
built by its `setup()` once per worker process, before the first shard that process computes, and held in the
process's `WORKER_RESOURCES` under the stage's `worker_key`; when the stage ends the flow has every worker run
`release_stage`, which calls `teardown()` there (threads, Dask and Ray alike: flows/runners.py).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import pyarrow as pa
from pydantic import BaseModel

from pipeline.config_base import identity
from pipeline.io import QuarantinedRow, ShardMarker, StageDir, quarantine_dir, quarantine_table, stable_hash, write_json_atomic
from schemas import validate_table

T = TypeVar("T")
# A stage's config type: `self.config.x` type-checks in each subclass (None for stages that have no config).
C = TypeVar("C", bound=BaseModel | None)
log = logging.getLogger(__name__)
REASON_KINDS = ("dropped", "skipped", "quarantined")  # stats `<kind>_<reason>`: rows by why


@dataclass
class ShardResult:
    table: pa.Table
    quarantined: list[QuarantinedRow] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)


class Stage(ABC, Generic[C]):
    name: ClassVar[str]
    # Declared per instance (the class gives the default; a stage whose inputs or schema follow its config sets them
    # in __init__): the graph (pipeline/graph.py) checks these before any work.
    inputs: tuple[str, ...] = ()  # upstream stages whose same-named shard `process` receives
    main_input: str | None = None  # whose rows `rows_in` counts; None: the first input
    output_schema: pa.Schema

    def __init__(self, config: C):
        self.config = config
        # Names this stage's resources in every worker process: pickled copies of the stage keep it.
        self.worker_key = uuid.uuid4().hex

    def fingerprint(self) -> str:
        """What, besides the input shards, decides this stage's output."""
        return stable_hash([self.name, identity(self.config)])

    @abstractmethod
    def process(self, shard: str, inputs: Mapping[str, pa.Table]) -> ShardResult: ...

    def setup(self) -> dict[str, Any]:
        """This worker's resources for the stage's shards, by name (an engine, a verifier pool, a model, a backend
        client). Called once per worker process, before the first shard computed there; `process` reads them
        from `self.resources`. Nothing is built where every shard is already finished."""
        return {}

    def teardown(self, resources: Mapping[str, Any]) -> None:
        """Release what `setup` built: `close()` each, the last built first."""
        for value in reversed(list(resources.values())):
            close = getattr(value, "close", None)
            if close is not None:
                close()

    @property
    def resources(self) -> Mapping[str, Any]:
        """This process's resources for the stage, set up on first use."""
        return WORKER_RESOURCES.acquire(self)

    def release(self) -> list[str]:
        """Tear down this process's resources for the stage (the flow does it on every worker when the stage ends)."""
        return WORKER_RESOURCES.release(self.worker_key)


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
        return out.finished(shard)
    started = time.perf_counter()
    WORKER_RESOURCES.acquire(stage)  # this worker's engines, pools, models: set up once per process, before its first shard
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
        totals.update(out.finished(shard).stats)
    totals.pop("milliseconds", None)  # timings are run metadata, kept in the markers, not in stats
    counts = dict(sorted(totals.items()))
    summary: dict[str, Any] = {"stage": stage_name, "shards": len(shards), "counts": counts}
    for kind in REASON_KINDS:
        summary[kind] = {k: v for k, v in counts.items() if k.startswith(f"{kind}_")}
    write_json_atomic(out.path / "stats.json", summary)
    return summary


class WorkerResources:
    """The resources each stage built in this process, by the stage's `worker_key`.

    Threads of one process share a stage's resources; pickled copies of the stage (one per Dask/Ray task)
    carry the same key, so every task a worker runs finds what its first one built. `release` runs the
    stage's `teardown`; the flow asks every worker that ran a stage to release it when the stage ends.
    """

    def __init__(self) -> None:
        self._held: dict[str, tuple[Stage, dict[str, Any]]] = {}
        self.setups: Counter[str] = Counter()  # per stage key: how often this process ran its setup
        self._building: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def acquire(self, stage: Stage) -> Mapping[str, Any]:
        key = stage.worker_key
        with self._lock:
            held = self._held.get(key)
            if held is not None:
                return held[1]
            building = self._building.setdefault(key, threading.Lock())
        with building:  # one build per process; other shard threads wait for it
            with self._lock:
                if key in self._held:
                    return self._held[key][1]
            started = time.perf_counter()
            resources = stage.setup()
            self.setups[key] += 1
            if resources:
                log.info("stage %s: resources %s set up in process %d (%.1f s)", stage.name, sorted(resources), os.getpid(), time.perf_counter() - started)
            with self._lock:
                self._held[key] = (stage, resources)
                self._building.pop(key, None)
            return resources

    def release(self, key: str) -> list[str]:
        """Tear down one stage's resources in this process; the names released (none if it held none)."""
        with self._lock:
            stage, resources = self._held.pop(key, (None, {}))
        if stage is None or not resources:
            return []
        stage.teardown(resources)
        log.info("stage %s: resources %s released in process %d", stage.name, sorted(resources), os.getpid())
        return sorted(resources)

    def release_all(self) -> None:
        for key in list(self._held):
            self.release(key)


WORKER_RESOURCES = WorkerResources()
atexit.register(WORKER_RESOURCES.release_all)  # a worker that exits mid-stage still closes pools and engines


def release_stage(key: str) -> dict[str, Any]:
    """Run on each worker when a stage ends: its pid, the resources it released, how often it had set them up."""
    released = WORKER_RESOURCES.release(key)
    return {"pid": os.getpid(), "released": released, "setups": WORKER_RESOURCES.setups.pop(key, 0)}


def build_logged(factory: Callable[[], T]) -> T:
    """Build one resource and say so: a cluster run's logs show one build per worker."""
    started = time.perf_counter()
    value = factory()
    name = getattr(factory, "func", factory).__qualname__
    log.info("shared resource %s built in process %d (%.1f s)", name, os.getpid(), time.perf_counter() - started)
    return value
