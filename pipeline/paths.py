"""Where the checkout and the shared real data are."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT_ENV = "MMR_DATA_ROOT"


def default_data_root() -> Path:
    """The shared real data: `$MMR_DATA_ROOT`, else `../shared/data` beside the checkout."""
    return Path(os.environ.get(DATA_ROOT_ENV) or REPO_ROOT.parent / "shared" / "data")


CACHE_ENV = "MMR_CACHE"


def cache_dir() -> Path:
    """Derived files shared by runs on this machine (streamable copies of JSON documents): `$MMR_CACHE`,
    else `~/.cache/mmr`. Entries are content-keyed and written atomically, so any run may reuse them."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mmr")
