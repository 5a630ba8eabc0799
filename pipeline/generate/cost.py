"""What a run's generations cost: requests and tokens by role and model, against what fixed sampling would ask.

Read from the generation rows (narrow columns, one shard at a time) and the generate stage's counts; the cards
show it per set (with tokens per published row) and the run keeps it in `generations/cost.json`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.generate.stage import TOKEN_KINDS, GenerateStage
from pipeline.io import StageDir, write_json_atomic

COST_FILE = "cost.json"
TOKEN_COLUMNS = [f"{kind}_tokens" for kind in TOKEN_KINDS]


def generation_cost(run_dir: Path | str, shards: Sequence[str], counts: Mapping[str, int]) -> dict:
    """Per (role, model): requests made, failed ones, and tokens by kind as the servers reported them (null counts
    as 0, and `tokens_reported` says how many rows reported any); per role: requests made against fixed sampling's.
    `counts` are the generate stage's summed stats."""
    stage = StageDir(run_dir, GenerateStage.name)
    tables = [stage.read(shard, columns=["role", "teacher", "error", *TOKEN_COLUMNS]) for shard in shards]
    rows = pa.concat_tables(tables) if tables else pa.table({})
    by_model = []
    if rows.num_rows:
        table = rows.append_column("failed", pc.is_valid(rows.column("error"))).append_column(
            "reported", pc.is_valid(rows.column("completion_tokens"))
        )
        aggregations = [("role", "count"), ("failed", "sum"), ("reported", "sum")] + [(c, "sum") for c in TOKEN_COLUMNS]
        grouped = table.group_by(["role", "teacher"]).aggregate(aggregations).to_pylist()
        for group in sorted(grouped, key=lambda g: (g["role"], g["teacher"])):
            by_model.append(
                {"role": group["role"], "model": group["teacher"], "requests": group["role_count"], "failed": group["failed_sum"],
                 "tokens_reported": group["reported_sum"], **{c: group[f"{c}_sum"] or 0 for c in TOKEN_COLUMNS}}
            )  # fmt: skip
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
