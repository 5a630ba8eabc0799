"""Prefect flows and deployments over the `pipeline` library.

Importing any flow module runs this first, before Prefect is imported: a direct run (`mmr-curate`,
`python -m flows.curate`) gets the environment the Makefile sets, a private Prefect home and no
analytics (whose start-up writes race the ephemeral server's SQLite: "database is locked"), and time
for that server to start on a busy machine (Prefect's default is 20 s), and the project's logging config
(flows/logging.yml: per-task lines to the API, not the terminal) unless $PREFECT_HOME has its own
logging.yml, and no model-loading progress bars; a variable the user set wins.
"""

import os
from pathlib import Path

from pipeline.paths import REPO_ROOT

os.environ.setdefault("PREFECT_HOME", str(REPO_ROOT / ".prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Loading weights" bars between the stages' own
if not (Path(os.environ["PREFECT_HOME"]).expanduser() / "logging.yml").exists():
    os.environ.setdefault("PREFECT_LOGGING_SETTINGS_PATH", str(Path(__file__).with_name("logging.yml")))
