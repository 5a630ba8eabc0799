"""The task runner a run's config asks for: local threads, or an existing Dask / Ray cluster.

Stages are the same either way; only where their shard tasks execute changes. The Dask and Ray
runners come from the optional `prefect-dask` / `prefect-ray` packages, imported only when asked for.
"""

from __future__ import annotations

from prefect.task_runners import ThreadPoolTaskRunner

from pipeline.config import TaskRunnerConfig


def task_runner_for(config: TaskRunnerConfig):
    if config.kind == "threads":
        return ThreadPoolTaskRunner(max_workers=config.max_workers)
    if config.kind == "dask":
        from prefect_dask import DaskTaskRunner

        if config.address:
            return DaskTaskRunner(address=config.address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": config.max_workers})
    if config.kind == "ray":
        from prefect_ray import RayTaskRunner

        return RayTaskRunner(address=config.address) if config.address else RayTaskRunner()
    raise ValueError(f"unknown task runner {config.kind!r}")
