"""The task runner a run's config asks for: local threads, or a Dask / Ray cluster.

Stages are the same either way; only where their shard tasks execute changes. Without an address
the Dask and Ray runners start a local cluster of `max_workers` single-threaded worker processes;
with one they join an existing cluster (`tcp://host:8786` for Dask, `host:6379` or `ray://host:10001`
for Ray). The runners come from the `cluster` extra (`prefect-dask`, `prefect-ray`), imported only
when asked for.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect.context import FlowRunContext
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner

from flows.progress import RUN_LOG_ENV
from pipeline.config import TaskRunnerConfig
from pipeline.stage import release_stage

RAY_RELEASE_WAIT_S = 60.0


@contextmanager
def workers_api(config: TaskRunnerConfig) -> Iterator[str | None]:
    """The Prefect API that worker processes report task states to.

    Threads share the flow's own. Worker processes cannot reach an in-process ephemeral API (each
    would start its own and the flow would never see their states): they get the configured server
    ($PREFECT_API_URL), else a temporary one started for this run on 127.0.0.1.
    """
    configured = PREFECT_API_URL.value()
    if config.kind == "threads" or configured:
        yield configured
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        server.stop()


def task_runner_for(config: TaskRunnerConfig, api_url: str | None = None, log_file: Path | None = None):
    """`api_url`: from `workers_api`, for the Dask and Ray workers this function starts or joins; `log_file`: the
    run's log file, which they append their task runs' lines to where they can reach it."""
    if config.kind == "threads":
        return ThreadPoolTaskRunner(max_workers=config.max_workers)
    worker_env = {"PREFECT_API_URL": api_url} if api_url else {}
    if log_file is not None:
        worker_env[RUN_LOG_ENV] = str(log_file.resolve())  # workers may run in another directory
    if config.kind == "dask":
        from prefect_dask import DaskTaskRunner

        if config.address:  # an existing cluster's workers carry their own environment (README)
            return DaskTaskRunner(address=config.address)
        # One thread per worker process: shard tasks are CPU-bound and bring their own pools.
        return DaskTaskRunner(
            cluster_kwargs={"n_workers": config.max_workers, "threads_per_worker": 1, "processes": True, "env": worker_env}
        )
    if config.kind == "ray":
        from prefect_ray import RayTaskRunner

        init_kwargs = {"runtime_env": {"env_vars": worker_env}}
        if config.address:
            return RayTaskRunner(address=config.address, init_kwargs=init_kwargs)
        return RayTaskRunner(init_kwargs=init_kwargs | {"num_cpus": config.max_workers, "include_dashboard": False})
    raise ValueError(f"unknown task runner {config.kind!r}")


def release_on_workers(worker_key: str) -> list[dict[str, Any]]:
    """A finished stage's resources torn down in every process that may hold them: this one (the thread runner's
    shards, and whatever the flow built itself), and each worker of the flow's Dask or Ray runner. Returns, per
    process that set the stage up, its pid, what it released and how often it had set up."""
    reports = [release_stage(worker_key)]
    context = FlowRunContext.get()
    runner = type(context.task_runner).__name__ if context else None
    if runner == "DaskTaskRunner":
        from prefect_dask import get_dask_client

        with get_dask_client() as client:  # a client of the flow's cluster
            reports += client.run(release_stage, worker_key).values()  # Dask's own broadcast: every worker, once
    elif runner == "RayTaskRunner":
        reports += _release_on_ray_workers(worker_key)
    return [report for report in reports if report["released"] or report["setups"]]


def _release_on_ray_workers(worker_key: str) -> list[dict[str, Any]]:
    """Ray has no run-on-every-worker call: one release task per CPU slot, each held at a barrier until all have
    started, so that together they occupy (and release in) every worker process of the idle cluster."""
    import ray

    slots = max(int(ray.cluster_resources().get("CPU", 1)), 1)
    arrivals = ray.remote(num_cpus=0)(_Arrivals).remote()
    task = ray.remote(num_cpus=1)(_release_at_barrier)
    return ray.get([task.remote(arrivals, slots, worker_key) for _ in range(slots)], timeout=2 * RAY_RELEASE_WAIT_S)


class _Arrivals:
    def __init__(self) -> None:
        self.count = 0

    def arrive(self) -> int:
        self.count += 1
        return self.count

    def arrived(self) -> int:
        return self.count


def _release_at_barrier(arrivals, slots: int, worker_key: str) -> dict[str, Any]:
    import ray

    ray.get(arrivals.arrive.remote())
    deadline = time.monotonic() + RAY_RELEASE_WAIT_S  # a busy cluster: release where we are rather than hang
    while ray.get(arrivals.arrived.remote()) < slots and time.monotonic() < deadline:
        time.sleep(0.05)
    return release_stage(worker_key)
