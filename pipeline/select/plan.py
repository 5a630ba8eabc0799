"""The selection plan: which rows enter the cold-start set and the RL set, decided once, globally.

Balancing needs the whole data set's composition, so one pass reads only narrow columns of every
shard (ids, domain, source, verdicts, scores, annotation judgements), applies the filters, counts
every drop by reason, and draws a balanced, seeded subset with `quota_sample`. The per-shard stages
then only materialise the planned rows, so the plan is the single place where selection happens.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from pipeline.config_base import StrictConfig
from pipeline.index import GlobalStep
from pipeline.io import StageDir, write_parquet_atomic
from pipeline.judgements import is_judgement, keep_mask
from pipeline.select.balance import quota_sample

PLAN_SCHEMA = pa.schema([("shard", pa.string()), ("key", pa.string())])


class SelectConfig(StrictConfig):
    cold_start_target: int = 1_600_000
    cold_start_max_per_problem: int = 2  # verified CoTs kept per problem, in (teacher, sample) order
    # Difficulty band by the policy's pass rate (inclusive; MMR1 keeps medium and hard: p <= 0.8).
    cold_start_min_pass_rate: float = 0.0
    cold_start_max_pass_rate: float = 0.8
    cold_start_min_rollouts: int = 2  # fewer rollouts: the difficulty is unknown
    cold_start_keep_unknown_difficulty: bool = True  # e.g. a source with teacher CoTs but no rollouts
    cold_start_balance: list[str] = Field(default_factory=lambda: ["domain", "source", "problem_type"])
    rl_target: int = 15_000
    rl_min_pass_rate: float = 0.0  # exclusive bounds: p = 0 and p = 1 give GRPO no gradient
    rl_max_pass_rate: float = 1.0
    rl_min_rollouts: int = 2
    rl_balance: list[str] = Field(default_factory=lambda: ["problem_type", "domain", "problem_cluster"])
    max_per_group: int | None = None  # cap on the finest balance group
    # No group of the first balance key (the RL set's problem types) above this multiple of the median
    # group, as far as the candidates allow; None: shares only follow the target.
    max_ratio_to_median: float | None = Field(default=2.0, ge=1.0)

    def set_identity(self, which: str) -> dict:
        """What decides one set's plan: its own `<set>_` fields and the shared ones, so tuning the RL
        set never replans the cold-start set."""
        other = "rl_" if which == "cold_start" else "cold_start_"
        return {name: value for name, value in self.identity().items() if not name.startswith(other)}


def _eligible_problems(
    run_dir: Path, shard: str, annotation_stages: Sequence[str], wanted: Sequence[str], drops: Counter
) -> tuple[pa.Table, np.ndarray]:
    """The shard's problems (narrow, plus the `wanted` annotation columns), pass rates, and keep mask."""
    problems = StageDir(run_dir, "problems").read(shard, columns=["problem_id", "domain", "source"])
    annotations = [StageDir(run_dir, stage).read(shard) for stage in annotation_stages]
    keep, rejected = keep_mask(problems.column("problem_id"), annotations)
    drops.update(rejected)
    scores = StageDir(run_dir, "difficulty").read(shard, columns=["pass_rate", "num_rollouts"])
    for table in [*annotations, scores]:
        for name in table.column_names:
            if (name in wanted or table is scores) and name not in problems.column_names and not is_judgement(name):
                problems = problems.append_column(name, table.column(name))
    return problems, keep


def difficulty_verdict(pass_rate: float | None, num_rollouts: int, config: SelectConfig) -> str | None:
    """Why a problem's CoTs leave the cold-start set by difficulty (None: they stay)."""
    if pass_rate is None or num_rollouts < config.cold_start_min_rollouts:
        return None if config.cold_start_keep_unknown_difficulty else "difficulty_unknown"
    if pass_rate > config.cold_start_max_pass_rate:
        return "too_easy_for_policy"
    if pass_rate < config.cold_start_min_pass_rate:
        return "too_hard_for_policy"
    return None


def rl_verdict(pass_rate: float | None, num_rollouts: int, config: SelectConfig) -> str | None:
    """Why a problem leaves the RL set by its rollouts (None: it is a candidate)."""
    if pass_rate is None or num_rollouts < config.rl_min_rollouts:
        return "too_few_rollouts"
    if not config.rl_min_pass_rate < pass_rate < config.rl_max_pass_rate:
        return "pass_rate_outside_band"
    return None


# The settings `rollout_decisions` reads, and the only ones generation's rounds depend on (a new RL target or
# balance replans the sets without regenerating anything).
ROLLOUT_DECISION_FIELDS = (
    "cold_start_min_pass_rate", "cold_start_max_pass_rate", "cold_start_min_rollouts", "cold_start_keep_unknown_difficulty",
    "rl_min_pass_rate", "rl_max_pass_rate", "rl_min_rollouts",
)  # fmt: skip


def rollout_decisions(num_correct: int, num_rollouts: int, config: SelectConfig) -> tuple[str | None, str | None]:
    """Everything selection decides from a problem's rollouts: its cold-start difficulty verdict and its RL verdict.
    Generation samples rollouts until these can no longer change (pipeline/generate/rounds.py)."""
    rate = num_correct / num_rollouts if num_rollouts else None
    return difficulty_verdict(rate, num_rollouts, config), rl_verdict(rate, num_rollouts, config)


def _cold_start_candidates(run_dir: Path, shard: str, config: SelectConfig, stages: Sequence[str], drops: Counter) -> pa.Table:
    problems, keep = _eligible_problems(run_dir, shard, stages, config.cold_start_balance, drops)
    info = {pid: row for pid, row, k in zip(problems.column("problem_id").to_pylist(), problems.to_pylist(), keep) if k}
    generations = StageDir(run_dir, "generations").read(
        shard, columns=["request_id", "problem_id", "role", "correct", "quality_ok", "quality_reason"]
    ).to_pylist()
    kept_per_problem: Counter[str] = Counter()
    rows = []
    for generation in generations:
        problem = info.get(generation["problem_id"])
        if generation["role"] != "teacher":
            continue  # rollouts only score difficulty
        if problem is None:
            drops["dropped_generation_of_ineligible_problem"] += 1
        elif (too := difficulty_verdict(problem["pass_rate"], problem["num_rollouts"], config)) is not None:
            drops[f"dropped_{too}"] += 1
        elif not generation["correct"]:
            drops["dropped_generation_incorrect"] += 1
        elif not generation["quality_ok"]:
            drops[f"dropped_quality_{generation['quality_reason']}"] += 1
        elif kept_per_problem[problem["problem_id"]] >= config.cold_start_max_per_problem:
            drops["dropped_over_per_problem_cap"] += 1
        else:
            if problem["pass_rate"] is None or problem["num_rollouts"] < config.cold_start_min_rollouts:
                drops["kept_difficulty_unknown"] += 1
            kept_per_problem[problem["problem_id"]] += 1
            rows.append({"shard": shard, "key": generation["request_id"], **{k: problem[k] for k in config.cold_start_balance if k in problem}})
    return pa.Table.from_pylist(rows) if rows else None


def _rl_candidates(run_dir: Path, shard: str, config: SelectConfig, stages: Sequence[str], drops: Counter) -> pa.Table:
    problems, keep = _eligible_problems(run_dir, shard, stages, config.rl_balance, drops)
    rows = []
    for problem, eligible in zip(problems.to_pylist(), keep):
        if not eligible:
            continue
        if (verdict := rl_verdict(problem["pass_rate"], problem["num_rollouts"], config)) is not None:
            drops[f"dropped_{verdict}"] += 1
        else:
            rows.append({"shard": shard, "key": problem["problem_id"], **{k: problem[k] for k in config.rl_balance if k in problem}})
    return pa.Table.from_pylist(rows) if rows else None


class SelectionPlan(GlobalStep[SelectConfig]):
    """`plan.parquet` (shard, key) of one set; its manifest holds drops by reason and the composition."""

    name = "select_plan"

    def __init__(self, config: SelectConfig, which: str, annotation_stages: Sequence[str], seed: int):
        super().__init__(config)
        self.which, self.annotation_stages, self.seed = which, list(annotation_stages), seed
        self.upstream = ("problems", *annotation_stages, "difficulty") + (("generations",) if which == "cold_start" else ())

    def identity(self) -> list:
        return [self.which, self.config.set_identity(self.which), self.annotation_stages, self.seed]

    def build(self, run_dir: Path, shards: Sequence[str], staging: Path) -> dict:
        config, cold_start = self.config, self.which == "cold_start"
        drops: Counter[str] = Counter()
        collect = _cold_start_candidates if cold_start else _rl_candidates
        tables = [t for t in (collect(run_dir, s, config, self.annotation_stages, drops) for s in shards) if t is not None]
        candidates = pa.concat_tables(tables) if tables else PLAN_SCHEMA.empty_table()
        target = config.cold_start_target if cold_start else config.rl_target
        # Balance over the configured keys this run has (the cluster key needs the diversity stage).
        used_keys = [name for name in (config.cold_start_balance if cold_start else config.rl_balance) if name in candidates.column_names]
        if candidates.num_rows:
            keys = [[str(v) for v in candidates.column(name).to_pylist()] for name in used_keys] or [["all"] * candidates.num_rows]
            chosen = quota_sample(
                keys, target, seed=self.seed, max_per_group=config.max_per_group, max_ratio_to_median=config.max_ratio_to_median
            )
            drops["dropped_by_balancing"] += candidates.num_rows - len(chosen)
            candidates = candidates.take(pa.array(chosen, pa.int64()))
        composition = {name: dict(sorted(Counter(map(str, candidates.column(name).to_pylist())).items())) for name in used_keys}
        write_parquet_atomic(staging / "plan.parquet", candidates.select(["shard", "key"]).cast(PLAN_SCHEMA))
        return {"selected": candidates.num_rows, "target": target, "balanced_by": used_keys,
                "composition": composition,
                "drops": {k: v for k, v in sorted(drops.items()) if not k.startswith("kept_")},
                "kept": {k: v for k, v in sorted(drops.items()) if k.startswith("kept_")}}


def planned_keys(plan_dir: Path, shard: str) -> set[str]:
    plan = pq.read_table(Path(plan_dir) / "plan.parquet", filters=[("shard", "==", shard)], columns=["key"])
    return set(plan.column("key").to_pylist())
