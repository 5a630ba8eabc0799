"""SIGKILL the curate flow in the middle of each stage, rerun, and compare with an uninterrupted run:
byte-identical outputs, no finished shard recomputed, no row lost or duplicated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.paths import REPO_ROOT

STAGES = [
    "problems", "dedupe", "decontam", "generations", "difficulty", "diversity", "problem_type", "cold_start", "rl"
]


SMALL_RUN = {
    "sources": [
        {"name": "tabmwp", "format": "tabmwp", "path": "tabmwp/problems.json", "domain": "table_math", "limit": 300},
        {"name": "gsm8k", "format": "gsm8k", "path": "gsm8k/test.jsonl", "domain": "arithmetic_word", "limit": 300},
    ],
    "ingest": {"shard_size": 100},
    "diversity": {"clusters": 8, "sample_size": 200},  # fewer than the rows: the stage embeds the rest
    "train": {"mode": "none"},
}


def flow_command(runs_root: Path, run_name: str) -> list[str]:
    config = runs_root / "small.yaml"
    if not config.exists():
        runs_root.mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump(SMALL_RUN))
    overrides = [f"runs_root={runs_root}", f"run_name={run_name}"]
    return [sys.executable, "-m", "flows.curate", "--target", "all", "--config", str(config), *overrides]


def start(command: list[str], home: Path, api_url: str | None = None) -> subprocess.Popen:
    """The flow in its own process group; it reports to `api_url`, else starts its own temporary API."""
    home.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def done_markers(run_dir: Path) -> dict[Path, tuple[bytes, int]]:
    """Markers of finished shards. A quarantine marker is written first and does not finish a shard."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run_dir.rglob("*.done") if "quarantine" not in p.parts}


def kill_mid_stage(command: list[str], home: Path, run_dir: Path, stage: str, api_url: str, timeout_s: float = 180) -> str:
    """Start the flow and SIGKILL its process group once `stage` has finished at least one shard."""
    process = start(command, home, api_url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        if any((run_dir / stage).glob("*.done")):
            break
        time.sleep(0.005)
    finished = process.poll() is not None
    if not finished:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return "finished before the kill" if finished else f"killed in {stage}"


def data_files(run_dir: Path) -> dict[str, bytes]:
    """Every data file and card of a run; markers and stats.json are run metadata (timings, cache hits)."""
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.suffix in (".parquet", ".md", ".png")
    }


@pytest.mark.slow
def test_sigkill_in_every_stage_then_resume_gives_identical_outputs(tmp_path, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    reference = tmp_path / "runs" / "reference"
    run = start(flow_command(tmp_path / "runs", "reference"), tmp_path / "home-ref")  # its own temporary API
    assert run.wait(timeout=300) == 0, run.stderr.read().decode()[-3000:]

    # The killed runs report to the session's API (killing a flow never kills the server it reports to):
    # eleven flow starts without eleven API start-ups. The final rerun starts its own again, as a user's would.
    crashed = tmp_path / "runs" / "crashed"
    outcomes, protected = [], {}
    for index, stage in enumerate(STAGES):
        command = flow_command(tmp_path / "runs", "crashed")
        outcomes.append(kill_mid_stage(command, tmp_path / f"home-{index}", crashed, stage, PREFECT_API_URL.value()))
        # Whatever was finished before this kill must survive every later rerun untouched.
        protected.update(done_markers(crashed))
    rerun = start(flow_command(tmp_path / "runs", "crashed"), tmp_path / "home-final")
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read().decode()[-3000:]
    print("kills:", outcomes)

    assert sum(o.startswith("killed") for o in outcomes) >= 3
    after = done_markers(crashed)
    recomputed = [str(p) for p, state in protected.items() if after.get(p) != state]
    assert not recomputed, recomputed
    assert data_files(crashed) == data_files(reference)
