"""An empty set is a result: published (loadable, with its features), its card and the log saying why, trainer
exports and training skipped with the same sentence. And what a direct run prints: one progress bar and one
summary line per stage, the per-task lines in the Prefect API and the run's log file, not on the terminal.

The flow test is the new user's case (issue 23): LogicVista (the shared real file, an object keyed by id, read
with `format: json` and a column mapping) with one recorded model in both roles, so every problem has one rollout
and none qualifies for the RL set."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys

import datasets
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.config import load_config
from pipeline.io import StageDir
from pipeline.paths import REPO_ROOT
from pipeline.progress import QUIET_ENV, SUMMARY as LINE, QuietConsoleFilter, stage_summary_line
from pipeline.publish import PublishConfig, publish_dataset
from pipeline.publish.dataset import published_empty_reason, published_rows
from pipeline.publish.empty import empty_set_reason
from pipeline.publish.exports import export_for_trainers, export_published
from pipeline.select.plan import SelectConfig
from pipeline.stage import run_shard
from schemas import PROBLEM_SCHEMA, RL_SCHEMA, hf_features

SETTINGS = SelectConfig().model_dump()


def stage(name, rows_in, rows_out, **kinds):
    return {"stage": name, "shards": 1, "counts": {"rows_in": rows_in, "rows_out": rows_out},
            **{kind: kinds.get(kind, {}) for kind in ("dropped", "skipped", "quarantined")}}


def test_the_reason_comes_from_the_first_empty_stage_else_the_largest_plan_drop():
    ingest = stage("problems", 5, 5)
    assert empty_set_reason("rl", [ingest, stage("rl", 5, 0, dropped={"dropped_too_few_rollouts": 4, "dropped_duplicate": 1})], SETTINGS) == (
        "no problem has 2 or more policy rollouts, so none has a pass rate; configure `backend.policy` or add rollout "
        "recordings (`roles: [rollout]`) (`too_few_rollouts`: 4 of 5 dropped; also dropped: `duplicate`: 1)"
    )
    banded = stage("rl", 5, 0, dropped={"dropped_pass_rate_outside_band": 5, "dropped_by_balancing": 0})
    assert empty_set_reason("rl", [ingest, banded], SETTINGS).startswith("every problem's pass rate is outside (0.0, 1.0)")
    quarantined = stage("problems", 3, 0, quarantined={"quarantined_invalid_problem": 3})
    assert empty_set_reason("cold_start", [quarantined, stage("dedupe", 0, 0), stage("cold_start", 0, 0)], SETTINGS) == (
        "no rows left after the problems stage (`quarantined_invalid_problem`: 3)"
    )
    copies = stage("cold_start", 9, 0, dropped={"dropped_contaminated_mathvista_testmini": 9})
    assert empty_set_reason("cold_start", [ingest, copies], SETTINGS).startswith(
        "every problem is a copy of a problem of the benchmark mathvista_testmini"
    )
    # Rollouts only, no teacher: nothing reached the cold-start plan and nothing was dropped.
    assert "configure `backend.teachers`" in empty_set_reason("cold_start", [ingest, stage("cold_start", 5, 0)], SETTINGS)


def test_an_empty_set_is_published_loadable_with_its_features_and_exports_nothing(tmp_path):
    rl = StageDir(tmp_path, "rl")
    for shard in ("a", "b"):
        rl.write(shard, RL_SCHEMA.empty_table(), "h", {})
    reason = "no problem has 2 or more policy rollouts"
    stale = tmp_path / "datasets" / "rl-verl"  # an earlier run's export of a set that had rows
    stale.mkdir(parents=True)
    folder = publish_dataset(tmp_path, "rl", RL_SCHEMA, PublishConfig(), [stage("rl", 2, 0)], ["a", "b"], {}, reason)

    assert published_rows(folder) == 0 and published_empty_reason(folder) == reason
    streamed = datasets.load_dataset(str(folder), split="train", streaming=True, cache_dir=str(tmp_path / "hf-cache"))  # private: the shared cache once answered for another run
    assert list(streamed) == [] and streamed.features == hf_features(RL_SCHEMA)
    assert pq.read_table(folder / "data").schema.names == RL_SCHEMA.names
    card = (folder / "README.md").read_text()
    assert "**This set is empty.** No problem has 2 or more policy rollouts." in card and "0 prompts in 1 Parquet files" in card
    assert yaml.safe_load(card.split("---")[1])["size_categories"] == ["n<1K"]

    assert export_published("rl", folder) is None and not stale.exists()
    assert export_for_trainers(None, folder, tmp_path / "exports") == {"verl": f"skipped, the rl set is empty: {reason}"}
    assert not (tmp_path / "exports" / "verl").exists()


def test_a_run_without_problems_clusters_nothing_instead_of_failing(tmp_path):
    from pipeline.score.diversity import ClusterCentroids, DiversityStage, DiversityStageConfig

    StageDir(tmp_path, "problems").write("a", PROBLEM_SCHEMA.empty_table(), "h", {})
    config = DiversityStageConfig()
    index = ClusterCentroids(config).prepare(tmp_path, ["a"])
    marker = run_shard(DiversityStage(config, index), tmp_path, "a")
    assert marker.rows == 0 and StageDir(tmp_path, "diversity").read("a").num_rows == 0


def test_quiet_console_keeps_summaries_warnings_and_loggers_a_user_turned_on(monkeypatch):
    def record(name, level, **extra):
        entry = logging.LogRecord(name, level, __file__, 0, "line", None, None)
        entry.__dict__.update(extra)
        return entry

    records = [record("prefect.flow_runs", logging.INFO), record("prefect.flow_runs", logging.INFO, **LINE),
               record("prefect.flow_runs", logging.WARNING), record("prefect", logging.INFO), record("pipeline.stage", logging.INFO)]
    console = QuietConsoleFilter()
    monkeypatch.setenv(QUIET_ENV, "0")
    assert [console.filter(r) for r in records] == [True] * 5
    monkeypatch.setenv(QUIET_ENV, "1")
    assert [console.filter(r) for r in records] == [False, True, True, False, True]
    counts = {"rows_in": 5, "rows_out": 4, "dropped_duplicate": 1, "near_duplicates": 0, "representatives": 1200}
    assert stage_summary_line({"stage": "dedupe", "shards": 1, "counts": counts}) == (
        "dedupe: 5 rows in, 4 out, 1 shard; dropped_duplicate 1, representatives 1,200"
    )


# --- the flow, run directly as a user runs it -----------------------------------------------------------------

SUMMARY = re.compile(r"\| INFO    \| Flow run '[^']+' - (\w+): [\d,]+ rows in, [\d,]+ out, \d+ shards?(; .+)?$")
PUBLISHED = re.compile(r"\| INFO    \| Flow run '[^']+' - (\w+): [\d,]+ rows published at \S+(; trainer export at \S+)?$")
EMPTY = re.compile(r"\| WARNING \| Flow run '[^']+' - (rl: empty set at \S+, trainer export and Hub push skipped|"
                   r"train: GRPO \+ VAS skipped, the rl set is empty): .+$")


@pytest.fixture(scope="module")
def logicvista_runs(tmp_path_factory, prefect_harness, data_root):
    """`python -m flows.curate --config <LogicVista, one model in both roles>`, then the same with `--quiet` (and no
    training, to save the time): (run dir, the problems, the first run's stderr, the quiet run)."""
    from prefect.settings import PREFECT_API_URL

    work = tmp_path_factory.mktemp("logicvista")
    problems = json.loads((data_root / "logicvista" / "dataset.json").read_text())
    # One model's replies, in the {id, response} JSON-lines layout of MATH-V's outputs: LogicVista's own worked
    # explanation, then its answer letters. The same reply plays the teacher and the one policy rollout.
    with open(work / "replies.jsonl", "w") as replies:
        for key, row in problems.items():
            replies.write(json.dumps({"id": key, "response": f"{row['reasoning']}\nThe answer is \\boxed{{{row['answer']}}}."}) + "\n")
    config = {
        "sources": [{"name": "logicvista", "format": "json", "path": "logicvista/dataset.json", "image_root": "logicvista/images",
                     "domain": "visual_logic", "license": "Apache-2.0",
                     "columns": {"question": "question", "answer": "answer", "images": "imagename"}}],
        "backend": {"kind": "recorded", "recordings": [{"source": "logicvista", "format": "mathvision_outputs",
                                                        "path": str(work / "replies.jsonl"), "teacher": "logicvista-reasoning",
                                                        "roles": ["teacher", "rollout"]}]},
        # LogicVista stands in for a new source with one recorded model: the default decontaminates against it as
        # a benchmark (it would be judged a copy of itself), so here only against the other two
        "decontam": {"benchmarks": [b for b in load_config(None, []).decontam.model_dump(mode="json")["benchmarks"] if b["name"] != "logicvista"]},
    }
    (work / "run.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "MMR_QUIET"} | {"PREFECT_API_URL": PREFECT_API_URL.value()}
    command = [sys.executable, "-m", "flows.curate", "--config", str(work / "run.yaml"), f"runs_root={work}", "run_name=lv",
               f"data_root={data_root}"]
    first = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stderr[-4000:]
    quiet = subprocess.run(command + ["train.mode=none", "--quiet"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert quiet.returncode == 0, quiet.stderr[-4000:]
    return work / "lv", problems, first.stderr, quiet


@pytest.mark.slow
def test_a_one_rollout_source_completes_with_an_empty_rl_set_that_says_why(logicvista_runs, tmp_path):
    run_dir, problems, stderr, _ = logicvista_runs
    assert "Traceback" not in stderr and "| ERROR" not in stderr
    empty_answers = sum(1 for row in problems.values() if not str(row["answer"]).strip())
    ingest = json.loads((run_dir / "problems" / "stats.json").read_text())
    assert ingest["counts"]["rows_out"] == len(problems) - empty_answers and sum(ingest["quarantined"].values()) == empty_answers

    rl = run_dir / "datasets" / "rl"
    reason, card = published_empty_reason(rl), (rl / "README.md").read_text()
    assert f"**This set is empty.** {reason[0].upper()}{reason[1:]}." in card
    # The plan's drops, as the card lists them: every ingested problem has one rollout, unless judged a copy.
    drops = dict(re.findall(r"^- `dropped_(\w+)`: (\d+)$", card.split("**rl** —")[1].split("\n\n", 2)[1], re.M))
    too_few = int(drops.pop("too_few_rollouts"))
    assert too_few + sum(map(int, drops.values())) == ingest["counts"]["rows_out"]
    assert reason.startswith("no problem has 2 or more policy rollouts") and "configure `backend.policy`" in reason
    assert f"`too_few_rollouts`: {too_few:,} of {ingest['counts']['rows_out']:,} dropped" in reason
    # The log, the skipped export and the skipped training say the card's sentence.
    assert f"rl: empty set at {rl}, trainer export and Hub push skipped: {reason}" in stderr
    assert f"train: GRPO + VAS skipped, the rl set is empty: {reason}" in stderr
    assert not (run_dir / "datasets" / "rl-verl").exists()
    streamed = datasets.load_dataset(str(rl), split="train", streaming=True, cache_dir=str(run_dir / "hf-cache"))
    assert list(streamed) == [] and streamed.features == hf_features(RL_SCHEMA)
    # The cold-start set is built from the same replies (difficulty unknown with one rollout), exported, trained on.
    cold = run_dir / "datasets" / "cold_start"
    assert published_rows(cold) > 0 and (run_dir / "datasets" / "cold_start-llamafactory" / "dataset_info.json").exists()
    assert "Beginning subflow run" in stderr and "sft: 0 steps" in stderr


@pytest.mark.slow
def test_a_direct_run_prints_a_bar_and_a_summary_per_stage_and_logs_tasks_to_the_api_and_its_file(logicvista_runs):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, LogFilter, LogFilterFlowRunId

    run_dir, _, stderr, quiet = logicvista_runs
    stages = sorted(p.parent.name for p in run_dir.glob("*/stats.json"))
    assert {"problems", "generations", "diversity", "cold_start", "rl"} <= set(stages)
    lines = stderr.replace("\r", "\n").splitlines()
    summaries = [SUMMARY.search(line).group(1) for line in lines if SUMMARY.search(line)]
    assert sorted(summaries) == stages  # one summary line per stage
    assert all(f"{name}: 100%|" in stderr for name in stages)  # its progress bar, finished
    assert "Task run" not in stderr  # no per-task line on the terminal...
    assert all("Flow run" in line for line in lines if "Finished in state" in line)  # ...only the flow runs' own

    # --quiet: the summaries, the published sets and why one is empty; stdout: the published folders.
    quiet_lines = [line for line in quiet.stderr.splitlines() if line.strip()]
    assert [line for line in quiet_lines if not (SUMMARY.search(line) or PUBLISHED.search(line) or EMPTY.search(line))] == []
    assert sorted(SUMMARY.search(line).group(1) for line in quiet_lines if SUMMARY.search(line)) == stages
    assert quiet.stdout.splitlines() == [f"cold_start: {run_dir / 'datasets' / 'cold_start'}", f"rl: {run_dir / 'datasets' / 'rl'}"]

    # Every shard task's lines are in the run's log file and in the Prefect API.
    log = (run_dir / "logs" / "curate.log").read_text()
    for name in stages:
        assert re.search(rf"Task run '{name}:logicvista-\d+' - Finished in state Completed\(\)", log), name
    flow_run_name = re.search(r"Flow run '([^']+)' - Beginning flow run", stderr).group(1)
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[flow_run_name])))[0]
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])), limit=200)
    finished = [entry for entry in logs if entry.task_run_id and entry.message.startswith("Finished in state Completed")]
    assert len(finished) >= len(stages)
