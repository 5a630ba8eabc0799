"""Shared fixtures: the real shared data, and a private Prefect home per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.paths import default_data_root

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = default_data_root()
    if not (root / "tabmwp" / "problems.json").exists():
        pytest.fail(f"shared data not found at {root}; set MMR_DATA_ROOT")
    return root


def pytest_collection_modifyitems(config, items):
    """GPU tests skip cleanly where no CUDA device is present."""
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if not has_gpu:
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One temporary Prefect API for the whole session (a private home, SQLite)."""
    from prefect.testing.utilities import prefect_test_harness

    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def default_run(tmp_path_factory, prefect_harness, data_root) -> tuple[Path, dict[str, Path], list[str]]:
    """`curate` on the embedded default (the shared data), once per session: (run dir, published sets, overrides).
    Tests read it or rerun it with the same inputs; one that changes an input works on a copy."""
    from flows.curate import curate

    runs = tmp_path_factory.mktemp("curate")
    overrides = [f"runs_root={runs}", "run_name=default", "train.mode=none"]
    published = {name: Path(folder) for name, folder in curate(target="all", overrides=overrides).items()}
    return runs / "default", published, overrides


@pytest.fixture(scope="session")
def curated_sets(default_run) -> dict[str, Path]:
    """Both sets of the default run: {"cold_start": dir, "rl": dir}."""
    return default_run[1]
