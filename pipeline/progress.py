"""Progress of a stage's shards: done / total, rows/s and ETA, as a terminal bar and through a callback;
and the one summary line a stage leaves on the console.

Pure bookkeeping: the flow turns the callback into a Prefect progress artifact, a direct run only
draws the bar. `MMR_QUIET=1` (or `quiet=True`) turns the bar off, e.g. in CI logs, and leaves only the
summary lines on the console (`QuietConsoleFilter`).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping

from tqdm import tqdm

QUIET_ENV = "MMR_QUIET"


def quiet_by_default() -> bool:
    return os.environ.get(QUIET_ENV, "") not in ("", "0", "false")


class ShardProgress:
    def __init__(self, stage: str, total: int, *, quiet: bool | None = None, on_update: Callable[["ShardProgress"], None] | None = None):
        self.stage, self.total, self.done, self.rows = stage, total, 0, 0
        self.on_update = on_update
        self._started = time.monotonic()
        disable = quiet_by_default() if quiet is None else quiet
        self._bar = tqdm(total=total, desc=stage, unit="shard", file=sys.stderr, disable=disable, dynamic_ncols=True)

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 100.0

    @property
    def rows_per_s(self) -> float:
        return self.rows / max(time.monotonic() - self._started, 1e-9)

    @property
    def eta_s(self) -> float | None:
        if not self.done:
            return None
        return (time.monotonic() - self._started) / self.done * (self.total - self.done)

    def describe(self) -> str:
        eta = "?" if self.eta_s is None else f"{self.eta_s:,.0f} s"
        return f"{self.stage}: {self.done}/{self.total} shards, {self.rows:,} rows, {self.rows_per_s:,.0f} rows/s, ETA {eta}"

    def shard_done(self, rows: int) -> None:
        self.done += 1
        self.rows += rows
        self._bar.set_postfix_str(f"{self.rows_per_s:,.0f} rows/s", refresh=False)
        self._bar.update(1)
        if self.on_update:
            self.on_update(self)

    def close(self) -> None:
        self._bar.close()


# `extra` of the log records a quiet console still shows: one summary line per stage, the published sets.
SUMMARY = {"mmr_summary": True}


def stage_summary_line(summary: Mapping) -> str:
    """A stage's stats (`pipeline.stage.summarise_stage`) in one line: rows in and out, its other non-zero counts."""
    counts = dict(summary["counts"])
    rows_in, rows_out = counts.pop("rows_in", 0), counts.pop("rows_out", 0)
    rest = ", ".join(f"{name} {value:,}" for name, value in counts.items() if value)
    shards = summary["shards"]
    line = f"{summary['stage']}: {rows_in:,} rows in, {rows_out:,} out, {shards} shard{'' if shards == 1 else 's'}"
    return f"{line}; {rest}" if rest else line


class QuietConsoleFilter(logging.Filter):
    """The console's filter in flows/logging.yml: when quiet (`MMR_QUIET`), Prefect's own lines below WARNING pass
    only if they are summary lines; they still reach the Prefect API and the run's log file. Loggers a user turned
    on for the console (e.g. `PREFECT_LOGGING_ROOT_LEVEL=INFO`) are left alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        chatter = record.name.startswith("prefect") and record.levelno < logging.WARNING
        return not (chatter and quiet_by_default()) or bool(getattr(record, "mmr_summary", False))
