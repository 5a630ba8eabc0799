"""Serve the deployments: `curate/cold-start`, `curate/rl`, and `train/sft`, `train/grpo-vas`, `train/evaluate`,
`train/all` (the train flow with one stage, or the whole chain sft -> grpo-vas -> evaluate).

    python -m flows.deploy                 # against $PREFECT_API_URL (an existing server)
    python -m flows.deploy --start-server  # start a server on 127.0.0.1 first (what `make serve` does)

then, from another shell, `prefect deployment run curate/cold-start`. The task runner comes from
the embedded config's `task_runner` (threads locally, Dask or Ray on a cluster).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from prefect import serve
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.curate import curate
from flows.runners import task_runner_for
from flows.server import prefect_server
from flows.train import train_flow
from pipeline.config import load_config
from pipeline.train.chain import STAGES


def deployments(config_path: str | None = None):
    # Served flows always have a server: their cluster workers report to it.
    runner = task_runner_for(load_config(config_path).task_runner, PREFECT_API_URL.value())
    flow = curate.with_options(task_runner=runner)
    defaults: dict[str, object] = {"config_path": config_path, "overrides": []}
    return [
        flow.to_deployment(name="cold-start", parameters={"target": "cold_start", **defaults}),
        flow.to_deployment(name="rl", parameters={"target": "rl", **defaults}),
        *[train_flow.to_deployment(name=stage, parameters={"stages": [stage]}) for stage in STAGES],
        train_flow.to_deployment(name="all", parameters={"stages": list(STAGES)}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the curate and train deployments.")
    parser.add_argument("--config", help="YAML run config the deployments use by default")
    parser.add_argument("--start-server", action="store_true", help="start a Prefect server on 127.0.0.1 first")
    parser.add_argument("--port", type=int, default=4200)
    args = parser.parse_args()
    if not args.start_server:
        serve(*deployments(args.config))
        return
    home = Path(os.environ.get("PREFECT_HOME", ".prefect"))
    home.mkdir(parents=True, exist_ok=True)
    with prefect_server(home, args.port) as api_url:
        print(f"Prefect server at {api_url}; run: PREFECT_API_URL={api_url} prefect deployment run curate/cold-start")
        with temporary_settings({PREFECT_API_URL: api_url}):
            serve(*deployments(args.config))


if __name__ == "__main__":
    main()
