"""Prefect flows and deployments over the `pipeline` library.

Importing any flow module runs this first, before Prefect is imported: a direct run (`mmr-curate`,
`python -m flows.curate`) gets the environment the Makefile sets, a private Prefect home and no
analytics (whose start-up writes race the ephemeral server's SQLite: "database is locked"), and time
for that server to start on a busy machine (Prefect's default is 20 s); a variable the user set wins.
"""

import os

from pipeline.paths import REPO_ROOT

os.environ.setdefault("PREFECT_HOME", str(REPO_ROOT / ".prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
