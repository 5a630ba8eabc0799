"""What a run shows while it works: a stage's shard tasks as they finish (a terminal bar, and a Prefect
progress artifact in the UI), and the run's log file.

The console itself is configured in flows/logging.yml (Prefect's logging settings): per-task lines go to
the Prefect API, not the terminal.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture, as_completed
from prefect.logging.formatters import PrefectFormatter

from pipeline.progress import ShardProgress

RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


def wait_with_progress(stage: str, futures: list[PrefectFuture]) -> None:
    """Return once every future is done (failures are left for the caller to raise)."""
    artifact = create_progress_artifact(0.0, key=f"{stage.replace('_', '-')}-progress", description=f"{stage}: starting")
    assert isinstance(artifact, UUID)  # called from a sync flow, Prefect's sync-compatible call returns the id itself
    def report(progress: ShardProgress) -> None:
        update_progress_artifact(artifact, progress.percent, progress.describe())  # sync: a flow run, not a coroutine

    progress = ShardProgress(stage, len(futures), on_update=report)
    try:
        for future in as_completed(futures):
            future.wait()  # keeps the final state on the future: `state` would otherwise ask the API, which may lag
            progress.shard_done(future.result()["rows"] if future.state.is_completed() else 0)
    finally:
        progress.close()


RUN_LOG_ENV = "MMR_RUN_LOG"  # the run's log file, for the worker processes a run starts itself


def _file_handler(path: Path) -> logging.FileHandler:
    """Appends with Prefect's own formatter and the date. Each line is one append, so the flow process and its
    worker processes can share the file."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(
        PrefectFormatter(
            format="%(asctime)s | %(levelname)-7s | %(name)s - %(message)s",
            flow_run_fmt="%(asctime)s | %(levelname)-7s | Flow run %(flow_run_name)r - %(message)s",
            task_run_fmt="%(asctime)s | %(levelname)-7s | Task run %(task_run_name)r - %(message)s",
        )
    )
    return handler


def _attach(handler: logging.Handler) -> None:
    for name in RUN_LOGGERS:
        logging.getLogger(name).addHandler(handler)


def _detach(handler: logging.Handler) -> None:
    for name in RUN_LOGGERS:
        logging.getLogger(name).removeHandler(handler)
    handler.close()


@contextmanager
def run_log_file(path: Path) -> Iterator[Path]:
    """Every flow-run and task-run line of this process, appended to `path` while the block runs (the lines the
    terminal leaves out included). Worker processes the run starts (a local Dask or Ray cluster) get the path as
    $MMR_RUN_LOG and append their task runs' lines through `log_to_run_file`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _file_handler(path)
    _attach(handler)
    try:
        yield path
    finally:
        _detach(handler)


_worker_handler: dict[str, logging.Handler] = {}  # this worker process's handler, by log file


def log_to_run_file() -> None:
    """In a worker process given $MMR_RUN_LOG: its task runs' lines go to the run's log file too (set up once per
    process). A worker that cannot see the file (another machine without the shared folder) leaves its lines to
    the Prefect API alone."""
    path = os.environ.get(RUN_LOG_ENV)
    if not path or path in _worker_handler or not Path(path).parent.is_dir():
        return
    for stale in _worker_handler.values():  # a worker reused by a later run writes to that run's file only
        _detach(stale)
    _worker_handler.clear()
    _worker_handler[path] = _file_handler(Path(path))
    _attach(_worker_handler[path])
