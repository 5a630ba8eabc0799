"""Selection planning, keep masks and difficulty, on hand-made shards: every drop counted by its reason."""

from __future__ import annotations

import pyarrow as pa
import scipy.stats
import pyarrow.parquet as pq
import pytest

from pipeline.index import load_manifest
from pipeline.io import StageDir
from pipeline.judgements import keep_mask
from pipeline.score.difficulty import DifficultyStage, ScoreConfig, pass_rate
from pipeline.select.plan import SelectConfig, SelectionPlan, planned_keys
from problem_rows import problem_row


def write(run_dir, stage, shard, columns):
    StageDir(run_dir, stage).write(shard, pa.table(columns), "test", {})


def ids_of(table):
    return table.column("problem_id")


def test_keep_mask_names_the_first_reason_of_each_rejected_row():
    ids = pa.chunked_array([pa.array(["a", "b", "c", "d"])])
    dedupe = pa.table({"problem_id": ids, "is_representative": [True, False, True, None], "cluster_size": [1, 2, 1, 1]})
    decontam = pa.table({"problem_id": ids, "contaminated_bench": [False, True, True, None], "contamination_score": [0.0, 1, 1, 0]})
    keep, drops = keep_mask(ids, [dedupe, decontam])
    # b is a duplicate first (counted once), c is contaminated, a null judgement keeps the row
    assert keep.tolist() == [True, False, False, True]
    assert drops == {"dropped_duplicate": 1, "dropped_contaminated_bench": 1}
    with pytest.raises(ValueError, match="not aligned"):
        keep_mask(pa.chunked_array([pa.array(["a", "b", "d", "c"])]), [dedupe])


def test_pass_rate_and_the_difficulty_stage_count_only_the_policy_rollouts():
    assert pass_rate(3, 4) == 0.75 and pass_rate(0, 0) is None
    problems = pa.table({"problem_id": ["p", "q", "r"]})
    verified = pa.table(
        {
            "problem_id": ["p", "p", "p", "q", "q", "p", "q"],
            "role": ["rollout", "rollout", "rollout", "rollout", "rollout", "teacher", "rollout"],
            "correct": [True, False, None, True, True, False, False],  # None: a failed generation, not a rollout
            "verdict_reason": ["exact", "exact", None, "exact", "exact", "exact", "truncated"],  # q's last: cut off
        }
    )
    result = DifficultyStage(ScoreConfig()).process("s", {"problems": problems, "generations": verified})
    counts = ["problem_id", "num_rollouts", "num_correct", "pass_rate"]
    assert result.table.select(counts).to_pylist() == [
        {"problem_id": "p", "num_rollouts": 2, "num_correct": 1, "pass_rate": 0.5},
        {"problem_id": "q", "num_rollouts": 3, "num_correct": 2, "pass_rate": 2 / 3},  # the truncated one: wrong
        {"problem_id": "r", "num_rollouts": 0, "num_correct": 0, "pass_rate": None},
    ]
    # the posterior under a flat prior: Beta(1 + 2, 1 + 1) for q, its central 90%; no rollouts, no posterior
    q = result.table.to_pylist()[1]
    assert q["pass_rate_mean"] == pytest.approx(3 / 5)
    assert q["pass_rate_low"] == pytest.approx(scipy.stats.beta.ppf(0.05, 3, 2)) and q["pass_rate_high"] == pytest.approx(scipy.stats.beta.ppf(0.95, 3, 2))
    assert q["pass_rate_low"] < 2 / 3 < q["pass_rate_high"]
    assert result.table.to_pylist()[2]["pass_rate_mean"] is None
    # the teacher's CoT is no rollout
    assert result.stats == {"pass_rate_mid": 2, "unscored": 1, "truncated_rollout_counted_wrong": 1}
    excluded = DifficultyStage(ScoreConfig(truncated_rollouts="excluded")).process("s", {"problems": problems, "generations": verified})
    assert excluded.table.select(counts).to_pylist()[1] == {"problem_id": "q", "num_rollouts": 2, "num_correct": 2, "pass_rate": 1.0}
    assert excluded.stats == {"pass_rate_mid": 1, "pass_rate_one": 1, "unscored": 1, "skipped_truncated_rollout": 1}


@pytest.fixture
def run_dir(tmp_path):
    """Two shards, two domains; one duplicate, one contaminated problem; rollouts and teacher CoTs."""
    shards = {
        "s-0": [problem_row(f"alpha {i}", "1", domain="algebra", source="x", source_id=str(i)) for i in range(6)],
        "s-1": [problem_row(f"beta {i}", "1", domain="geometry", source="y", source_id=str(i)) for i in range(3)],
    }
    for shard, rows in shards.items():
        ids = [r["problem_id"] for r in rows]
        write(tmp_path, "problems", shard, {"problem_id": ids, "domain": [r["domain"] for r in rows], "source": [r["source"] for r in rows]})
        duplicate = [i != 1 for i in range(len(ids))] if shard == "s-0" else [True] * len(ids)
        write(tmp_path, "dedupe", shard, {"problem_id": ids, "is_representative": duplicate})
        write(tmp_path, "decontam", shard, {"problem_id": ids, "contaminated_bench": [shard == "s-1" and i == 0 for i in range(len(ids))]})
        # pass rates: 0, 1/2, 1/2, ... with 2 rollouts, the last problem of each shard has only 1
        rollouts = [2] * (len(ids) - 1) + [1]
        correct = [0] + [1] * (len(ids) - 1)
        write(tmp_path, "difficulty", shard, {"problem_id": ids, "num_rollouts": rollouts, "pass_rate": [c / n for c, n in zip(correct, rollouts)]})
        generations = [(f"{pid}-{k}", pid, "teacher", k != 2, True, "ok") for pid in ids for k in range(4)]
        generations[0] = (f"{ids[0]}-0", ids[0], "teacher", True, False, "truncated")
        generations.append((f"{ids[1]}-rollout", ids[1], "rollout", True, True, "ok"))  # never a cold-start row
        columns = ["request_id", "problem_id", "role", "correct", "quality_ok", "quality_reason"]
        write(tmp_path, "generations", shard, dict(zip(columns, map(list, zip(*generations)))))
    return tmp_path


def plan(run_dir, which, seed=0, **select):
    step = SelectionPlan(SelectConfig(**select), which, ["dedupe", "decontam"], seed)
    index = step.prepare(run_dir, ["s-0", "s-1"])
    return index, load_manifest(index)


def test_the_rl_plan_keeps_only_eligible_problems_inside_the_pass_rate_band(run_dir):
    index, manifest = plan(run_dir, "rl", rl_balance=["domain"])
    # s-0: 6 problems - 1 duplicate - p=0 (row 0) - 1 rollout (row 5) = 3; s-1: 3 - 1 contaminated - 1 rollout = 1
    assert manifest["drops"] == {
        "dropped_duplicate": 1,
        "dropped_contaminated_bench": 1,
        "dropped_pass_rate_outside_band": 1,
        "dropped_too_few_rollouts": 2,
        "dropped_by_balancing": 0,
    }
    assert manifest["selected"] == 4 and manifest["composition"] == {"domain": {"algebra": 3, "geometry": 1}}
    assert len(planned_keys(index, "s-0")) == 3 and len(planned_keys(index, "s-1")) == 1


def test_balancing_fills_the_smaller_domain_first_and_is_seeded(run_dir):
    _, manifest = plan(run_dir, "rl", rl_target=2, rl_balance=["domain"])
    assert manifest["composition"] == {"domain": {"algebra": 1, "geometry": 1}}
    assert manifest["drops"]["dropped_by_balancing"] == 2
    first = pq.read_table(plan(run_dir, "rl", seed=1, rl_target=2, rl_balance=["domain"])[0] / "plan.parquet")
    again = pq.read_table(plan(run_dir, "rl", seed=1, rl_target=2, rl_balance=["domain"])[0] / "plan.parquet")
    assert first.equals(again)


def test_the_cold_start_plan_keeps_verified_good_cots_up_to_the_per_problem_cap(run_dir):
    index, manifest = plan(run_dir, "cold_start", cold_start_max_per_problem=2)
    # 9 problems x 4 CoTs: the duplicate's and the contaminated problem's are not candidates (8); of the
    # 7 eligible problems' CoTs, sample 2 is wrong (7) and one is truncated; 2 per problem are kept.
    assert manifest["drops"]["dropped_generation_of_ineligible_problem"] == 8
    assert manifest["drops"]["dropped_generation_incorrect"] == 7
    assert manifest["drops"]["dropped_quality_truncated"] == 1  # s-1's first problem is the contaminated one
    assert manifest["drops"]["dropped_over_per_problem_cap"] == 6  # the third good CoT of 6 problems
    assert manifest["selected"] == 14 and sum(len(planned_keys(index, s)) for s in ("s-0", "s-1")) == 14
    # The last problem of each shard has one rollout: difficulty unknown, kept (2 CoTs each) and counted.
    assert manifest["kept"] == {"kept_difficulty_unknown": 4}


def test_the_cold_start_plan_drops_problems_too_easy_for_the_policy(run_dir):
    _, manifest = plan(run_dir, "cold_start", cold_start_max_pass_rate=0.4)
    # p = 1/2 over 2 rollouts: 3 eligible problems of s-0 and 1 of s-1; their 4 CoTs each leave as too easy
    assert manifest["drops"]["dropped_too_easy_for_policy"] == 4 * 4
    assert manifest["selected"] == 2 + 4  # the p = 0 problem (2 good CoTs) and the two of unknown difficulty


def test_a_plan_over_an_unfinished_shard_names_it(run_dir):
    StageDir(run_dir, "difficulty").marker_path("s-1").unlink()
    with pytest.raises(FileNotFoundError, match="select_plan: upstream shard difficulty/s-1 is not finished"):
        plan(run_dir, "rl")
