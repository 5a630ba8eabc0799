"""The curate flow, unchanged, on a real Dask LocalCluster and on a real Ray cluster on 127.0.0.1.

Each run SIGKILLs one worker process in the middle of a stage, and must still write exactly the
bytes of the thread runner (nothing lost, nothing duplicated), while every worker process builds
each shared resource (teacher backend, verifier pool, embedding model) at most once.
The Ray test is the executable proof of the README's multi-node section: it starts a cluster with
`ray start --head` and points the flow at it with `task_runner.address`, as a user would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
import yaml

from pipeline.paths import REPO_ROOT
from test_crash_resume import SMALL_RUN, data_files

pytestmark = pytest.mark.slow  # each starts a cluster and runs the whole small flow

KILL_STAGE = "diversity"  # the slowest stage of the small run: its shards are still running when we look
BUILD_LINE = re.compile(r"shared resource (\S+) built in process (\d+)")

# Worker logs reach the flow's stderr: builds are counted from there. Ray would fold repeated lines.
LOG_ENV = {
    "PREFECT_LOGGING_EXTRA_LOGGERS": "pipeline",
    "PREFECT_LOGGING_ROOT_LEVEL": "INFO",
    "RAY_DEDUP_LOGS": "0",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",  # a first start migrates a fresh database
    "PYTHONPATH": str(REPO_ROOT),
}


def environment(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = os.environ | LOG_ENV | {"PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)  # each run starts its own temporary API
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_flow(tmp_path: Path, name: str, *overrides: str, kill=None) -> str:
    """Run `python -m flows.curate` on the small config; `kill()` is polled until it returns True."""
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL_RUN))
    command = [sys.executable, "-m", "flows.curate", "--config", str(config), f"runs_root={tmp_path / 'runs'}", f"run_name={name}", *overrides]
    log = tmp_path / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment(tmp_path / f"home-{name}"), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while process.poll() is None:
                if kill is not None and kill(process):
                    kill = None
                time.sleep(0.01)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    text = log.read_text(errors="replace")
    assert process.returncode == 0, text[-4000:]
    return text


def kill_one_worker_mid_stage(run_dir: Path, workers, killed: list[int]):
    """A poll function: once KILL_STAGE has finished some but not all shards, SIGKILL a busy worker."""

    def poll(flow: subprocess.Popen) -> bool:
        shards = len(list((run_dir / "problems").glob("*.done")))
        done = len(list((run_dir / KILL_STAGE).glob("*.done")))
        if not 0 < done < shards:
            return False
        busy = workers(flow)
        if not busy:
            return False
        busy[0].send_signal(signal.SIGKILL)
        killed.append(busy[0].pid)
        return True

    return poll


def dask_workers(flow: subprocess.Popen) -> list[psutil.Process]:
    """LocalCluster's worker processes: spawned children of the flow process (its nannies live in it)."""
    children = psutil.Process(flow.pid).children()
    return [p for p in children if "spawn_main" in " ".join(p.cmdline())]


def builds(log: str) -> Counter[tuple[str, int]]:
    return Counter((name, int(pid)) for name, pid in BUILD_LINE.findall(log))


def assert_built_once_per_worker(log: str, workers_seen: int) -> None:
    built = builds(log)
    assert built and max(built.values()) == 1, built  # never twice in one process
    per_resource = Counter(name for name, _ in built)
    # The small run has 6 shards a stage: built per task, a resource would appear 6 times.
    assert {"make_backend", "start_verifier", "_open_model"} <= set(per_resource), per_resource
    # The flow process builds the embedding model too: it fits the k-means sample itself.
    assert max(per_resource.values()) <= workers_seen + 1, per_resource


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    tmp_path = tmp_path_factory.mktemp("threads")
    run_flow(tmp_path, "threads")
    return data_files(tmp_path / "runs" / "threads")


def run_on_cluster_with_a_kill(tmp_path: Path, name: str, workers, *overrides: str) -> tuple[dict[str, bytes], str, list[int]]:
    run_dir = tmp_path / "runs" / name
    killed: list[int] = []
    log = run_flow(tmp_path, name, *overrides, kill=kill_one_worker_mid_stage(run_dir, workers, killed))
    assert killed, f"no worker was busy in {KILL_STAGE}"
    return data_files(run_dir), log, killed


def test_dask_local_cluster_survives_a_killed_worker_with_identical_bytes(tmp_path, reference):
    """Also the lifecycle on worker processes: each worker that ran a stage set it up once and released it when the
    stage ended (generations before the kill; diversity, where a worker is killed, in every worker still alive)."""
    outputs, log, killed = run_on_cluster_with_a_kill(tmp_path, "dask", dask_workers, "task_runner.kind=dask", "task_runner.max_workers=2")
    assert outputs == reference
    assert_built_once_per_worker(log, workers_seen=3)  # two workers and the one that replaced the killed one
    run_dir = tmp_path / "runs" / "dask"
    for stage, resources in [("generations", ["backend", "verifier"]), ("diversity", ["embedder"])]:
        workers = json.loads((run_dir / stage / "workers.json").read_text())
        ran = {int(pid) for pid in workers["shards_by_process"]}
        assert len(ran) >= 2 and os.getpid() not in ran, workers  # the shards ran on the worker processes
        # every worker that ran a shard (and lives) set the stage up once and tore it down, closing each resource
        alive = ran - set(killed) if stage == KILL_STAGE else ran
        assert sorted(report["pid"] for report in workers["resources"]) == sorted(alive), workers
        assert all(report["setups"] == 1 and report["released"] == resources for report in workers["resources"]), workers
    assert_task_lines_in_run_log(run_dir)


def assert_task_lines_in_run_log(run_dir: Path) -> None:
    """The task runs happen on the workers; their lines reach the run's log file as the threads runner's do."""
    log = (run_dir / "logs" / "curate.log").read_text()
    shards = [marker.stem for marker in (run_dir / "problems").glob("*.done")]
    for stage in ("generations", "diversity"):
        finished = set(re.findall(rf"Task run '{stage}:(\S+)' - Finished in state Completed\(\)", log))
        assert finished == set(shards), (stage, finished)


@pytest.fixture
def ray_cluster(tmp_path):
    """`ray start --head` on 127.0.0.1 with two CPUs (two worker processes), as the README describes."""
    port = free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # Ray's socket paths must stay short
    command = [
        str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
        f"--port={port}", f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}", "--num-cpus=2", "--include-dashboard=false",
        "--object-store-memory=200000000", "--disable-usage-stats", f"--temp-dir={temp_dir}",
    ]  # fmt: skip
    head = subprocess.Popen(command, env=environment(tmp_path / "home-ray"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not (temp_dir / "session_latest").exists() or not _listening(port):
            assert head.poll() is None and time.monotonic() < deadline, "ray head did not start"
            time.sleep(0.2)
        yield address, head
    finally:
        processes = [head, *psutil.Process(head.pid).children(recursive=True)] if head.poll() is None else []
        for process in processes:
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_ray_cluster_by_address_survives_a_killed_worker_with_identical_bytes(tmp_path, reference, ray_cluster):
    address, head = ray_cluster

    def ray_workers(flow: subprocess.Popen) -> list[psutil.Process]:
        # Ray titles a worker process after the task it runs (its agents are "ray::" too, and fate-share the node).
        processes = psutil.Process(head.pid).children(recursive=True)
        return [p for p in processes if p.cmdline() and p.cmdline()[0].startswith("ray::shard_task")]

    outputs, log, killed = run_on_cluster_with_a_kill(tmp_path, "ray", ray_workers, "task_runner.kind=ray", f"task_runner.address={address}")
    assert outputs == reference
    assert_built_once_per_worker(log, workers_seen=3)
    # before the kill: each worker that ran a generation shard released the backend when the stage ended
    workers = json.loads((tmp_path / "runs" / "ray" / "generations" / "workers.json").read_text())
    assert {r["pid"] for r in workers["resources"] if "backend" in r["released"]} == {int(p) for p in workers["shards_by_process"]}
    assert_task_lines_in_run_log(tmp_path / "runs" / "ray")
