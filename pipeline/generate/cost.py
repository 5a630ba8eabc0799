"""What a run's generations cost: requests and tokens by role and model, against what fixed sampling would ask.

Read from the generation rows (narrow columns, one shard at a time) and the generate stage's counts; the cards
show it per set (with tokens per published row) and the run keeps it in `generations/cost.json`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from pipeline.generate.stage import TOKEN_KINDS, GenerateStage
from pipeline.io import StageDir, write_json_atomic

COST_FILE = "cost.json"
TOKEN_COLUMNS = [f"{kind}_tokens" for kind in TOKEN_KINDS]
SUMMED = ["failed", "reported", *TOKEN_COLUMNS]  # per (role, model), besides the request count


def generation_cost(run_dir: Path | str, shards: Sequence[str], counts: Mapping[str, int]) -> dict:
    """Per (role, model): requests made, failed ones, and tokens by kind as the servers reported them (null counts
    as 0, and `tokens_reported` says how many rows reported any); per role: requests made against fixed sampling's.
    `counts` are the generate stage's summed stats."""
    stage = StageDir(run_dir, GenerateStage.name)
    totals: dict[tuple[str, str], Counter[str]] = {}
    for shard in shards:  # summed shard by shard: memory bounded by one shard's narrow columns
        rows = stage.read(shard, columns=["role", "teacher", "error", *TOKEN_COLUMNS])
        if not rows.num_rows:
            continue
        table = rows.append_column("failed", pc.is_valid(rows.column("error"))).append_column(
            "reported", pc.is_valid(rows.column("completion_tokens"))
        )
        for group in table.group_by(["role", "teacher"]).aggregate([("role", "count"), *((c, "sum") for c in SUMMED)]).to_pylist():
            counts_here = {"requests": group["role_count"], **{c: group[f"{c}_sum"] or 0 for c in SUMMED}}
            totals.setdefault((group["role"], group["teacher"]), Counter()).update(counts_here)
    by_model: list[dict[str, Any]] = [
        {"role": role, "model": model, "requests": summed["requests"], "failed": summed["failed"],
         "tokens_reported": summed["reported"], **{c: summed[c] for c in TOKEN_COLUMNS}}
        for (role, model), summed in sorted(totals.items())
    ]  # fmt: skip
    roles = {}
    for role in ("teacher", "rollout"):
        tokens = {c: sum(m[c] for m in by_model if m["role"] == role) for c in TOKEN_COLUMNS}
        roles[role] = {"requests_fixed": counts.get(f"requests_fixed_{role}", 0), "requests_made": counts.get(f"requests_made_{role}", 0), **tokens}
    return {"roles": roles, "by_model": by_model, "requests_sent_this_run": counts.get("requests_sent", 0)}


def total_tokens(cost: Mapping, role: str | None = None) -> int:
    """Prompt + completion tokens (reasoning is part of completion, as servers count it) of one role or both."""
    return sum(values["prompt_tokens"] + values["completion_tokens"] for name, values in cost["roles"].items() if role in (None, name))


def write_cost(run_dir: Path | str, cost: Mapping) -> Path:
    path = Path(run_dir) / GenerateStage.name / COST_FILE
    write_json_atomic(path, cost)
    return path
