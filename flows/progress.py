"""A stage's shard tasks as they finish: a terminal bar, and a Prefect progress artifact in the UI."""

from __future__ import annotations

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture, as_completed

from pipeline.progress import ShardProgress


def wait_with_progress(stage: str, futures: list[PrefectFuture]) -> None:
    """Return once every future is done (failures are left for the caller to raise)."""
    artifact = create_progress_artifact(0.0, key=f"{stage.replace('_', '-')}-progress", description=f"{stage}: starting")
    progress = ShardProgress(stage, len(futures), on_update=lambda p: update_progress_artifact(artifact, p.percent, p.describe()))
    try:
        for future in as_completed(futures):
            progress.shard_done(future.result()["rows"] if future.state.is_completed() else 0)
    finally:
        progress.close()
