"""A real Prefect server on 127.0.0.1 serves the deployments; `prefect deployment run` completes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from flows.server import prefect_server, stop_process_group
from test_crash_resume import SMALL_RUN


def wait_for_deployment(api_url: str, name: str, timeout_s: float = 120) -> None:
    flow_name, deployment = name.split("/")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = httpx.get(f"{api_url}/deployments/name/{flow_name}/{deployment}", timeout=5)
        if response.status_code == 200:
            return
        time.sleep(1)
    raise TimeoutError(f"deployment {name} never appeared")


@pytest.mark.slow
def test_prefect_deployment_run_curate_cold_start(tmp_path):
    home = tmp_path / "prefect"
    home.mkdir()
    config = tmp_path / "run.yaml"
    # The small run: this test is about serving and triggering; the default run's figures are test_curate_flow's.
    config.write_text(yaml.safe_dump({**SMALL_RUN, "runs_root": str(tmp_path / "runs"), "run_name": "served"}))
    with prefect_server(home) as api_url:
        env = os.environ | {"PREFECT_HOME": str(home), "PREFECT_API_URL": api_url}
        serve_log = open(tmp_path / "serve.log", "wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "flows.deploy", "--config", str(config)],
            env=env, stdout=serve_log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            wait_for_deployment(api_url, "curate/cold-start")
            for name in ("train/sft", "train/grpo-vas", "train/evaluate", "train/all"):
                wait_for_deployment(api_url, name)
            result = subprocess.run(
                [sys.executable, "-m", "prefect", "deployment", "run", "curate/cold-start", "--watch", "--watch-timeout", "300"],
                env=env, capture_output=True, text=True, timeout=350,
            )
        finally:
            stop_process_group(server)
            serve_log.close()
        assert result.returncode == 0, result.stdout + result.stderr + (tmp_path / "serve.log").read_text()[-3000:]
        runs = httpx.post(f"{api_url}/flow_runs/filter", json={}, timeout=10).json()
        assert [r["state"]["type"] for r in runs if r["deployment_id"]] == ["COMPLETED"]
    folder = tmp_path / "runs" / "served" / "datasets" / "cold_start"
    assert (folder / "README.md").exists() and list((folder / "data").glob("*.parquet"))
    assert not (tmp_path / "runs" / "served" / "datasets" / "rl").exists()
