"""A direct flow run gets the Makefile's Prefect environment from the code path, before Prefect loads."""

from __future__ import annotations

import os
import subprocess
import sys

from pipeline.paths import REPO_ROOT

SHOW = "import flows, os, sys; print(os.environ['PREFECT_HOME'], os.environ['PREFECT_SERVER_ANALYTICS_ENABLED'], 'prefect' in sys.modules)"


def flow_environment(**settings: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED")}
    result = subprocess.run([sys.executable, "-c", SHOW], env=env | settings, cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return result.stdout.split()


def test_a_private_home_and_no_analytics_are_set_before_prefect_is_imported():
    assert flow_environment() == [str(REPO_ROOT / ".prefect"), "false", "False"]


def test_a_users_explicit_settings_are_kept(tmp_path):
    assert flow_environment(PREFECT_HOME=str(tmp_path), PREFECT_SERVER_ANALYTICS_ENABLED="true")[:2] == [str(tmp_path), "true"]
