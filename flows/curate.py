"""The `curate` flow: ingest -> dedupe, decontam -> generate -> verify -> score (difficulty, diversity,
problem type) -> select -> publish -> train.

Thin by design: the stage graph is declared once in `pipeline/graph.py` (and checked before any work); the flow
walks it, fans each stage's shards out as tasks (paths in, markers out, never DataFrames) and publishes the sets. Finished shards are skipped by their markers, so
rerunning the flow after a crash resumes it. Run it directly: `python -m flows.curate --target rl`.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.progress import log_to_run_file, run_log_file, wait_with_progress
from flows.runners import release_on_workers, task_runner_for, workers_api
from pipeline.config import RunConfig, load_config, save_resolved
from pipeline.generate.cost import generation_cost, write_cost
from pipeline.generate.stage import GenerateStage
from pipeline.graph import SETS, curation_graph
from pipeline.index import GlobalStep, IndexedStage
from pipeline.io import write_json_atomic
from pipeline.progress import QUIET_ENV, SUMMARY, stage_summary_line
from pipeline.publish import publish_dataset, push_folder
from pipeline.publish.dataset import published_empty_reason, published_rows
from pipeline.publish.empty import empty_set_reason
from pipeline.publish.exports import export_published
from pipeline.stage import Stage, run_shard, summarise_stage
from schemas import COLD_START_SCHEMA, RL_SCHEMA

Target = Literal["all", "cold_start", "rl"]
WORKERS_FILE = "workers.json"  # run metadata: which processes ran a stage's shards, set up and released its resources


# Markers make shards idempotent, so a retried task redoes at most its own shard.
@task(retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE, task_run_name="{stage.name}:{shard}")
def shard_task(stage: Stage, run_dir: Path, shard: str) -> dict:
    log_to_run_file()
    marker = run_shard(stage, run_dir, shard)
    return {"shard": marker.shard, "rows": marker.rows, "pid": os.getpid()}


@task(cache_policy=NO_CACHE, task_run_name="prepare:{step.name}")
def prepare_task(step: GlobalStep, run_dir: Path, shards: list[str]) -> Path:
    """A global step (an index over all shards): streams the shards, skips itself when up to date."""
    log_to_run_file()
    return step.prepare(run_dir, shards)


def run_stage(stage: Stage, run_dir: Path, shards: list[str]) -> dict:
    futures = [shard_task.submit(stage, run_dir, shard) for shard in shards]
    try:
        wait_with_progress(stage.name, futures)
        for future in futures:
            future.result()  # re-raise the first failure with its shard named in the task run
    finally:  # every worker that ran the stage frees its engine, pool or model before the next stage starts
        released = release_on_workers(stage.worker_key)
    summary = summarise_stage(run_dir, stage.name, shards)
    ran = Counter(future.result()["pid"] for future in futures)
    write_json_atomic(run_dir / stage.name / WORKERS_FILE, {"shards_by_process": ran, "resources": released})
    logger = get_run_logger()
    if any(report["released"] for report in released):
        logger.info("%s: released %s", stage.name, "; ".join(f"{r['released']} in process {r['pid']}" for r in released if r["released"]))
    logger.info(stage_summary_line(summary), extra=SUMMARY)
    return summary


def _publish(config: RunConfig, stage: Stage, shards: list[str], lineage: list[dict], which: str, cost: dict | None) -> str:
    """Publish the set; an empty one is published too, its card saying why, and nothing is exported or pushed
    (a push would replace the repository's last set with no rows)."""
    schema, repo_id = {
        "cold_start": (COLD_START_SCHEMA, config.publish.cold_start_repo_id),
        "rl": (RL_SCHEMA, config.publish.rl_repo_id),
    }[which]
    licenses = {source.name: source.license for source in config.sources}
    empty = lineage[-1]["counts"]["rows_out"] == 0
    reason = empty_set_reason(stage.name, lineage, config.select.model_dump()) if empty else None
    folder = publish_dataset(config.run_dir, stage.name, schema, config.publish, lineage, shards, licenses, reason, cost)
    export = export_published(stage.name, folder) if config.publish.trainer_exports else None  # None when empty
    if empty:
        get_run_logger().warning("%s: empty set at %s, trainer export and Hub push skipped: %s", stage.name, folder, reason)
        return str(folder)
    line = f"{stage.name}: {lineage[-1]['counts']['rows_out']:,} rows published at {folder}"
    get_run_logger().info(f"{line}; trainer export at {export}" if export else line, extra=SUMMARY)
    if config.publish.push_to_hub and repo_id:
        push_folder(
            folder,
            repo_id,
            token_env=config.publish.token_env,
            private=config.publish.private,
            dry_run=config.publish.dry_run,
        )
    return str(folder)


TRAINS = {"cold_start": "SFT", "rl": "GRPO + VAS"}  # what the train chain does with each set


def _trigger_training(config: RunConfig, published: dict[str, str]) -> None:
    """The train chain on the sets just published: SFT on the cold-start set (when built), GRPO + VAS on the RL set.
    An empty set is left out, with the reason its card gives; with neither set to train on, nothing starts."""
    usable = {}
    for name, folder in published.items():
        if published_rows(folder):
            usable[name] = folder
        else:
            get_run_logger().warning("train: %s skipped, the %s set is empty: %s", TRAINS[name], name, published_empty_reason(folder))
    if not usable:
        return
    parameters: dict[str, Any] = {
        "output_dir": str(config.run_dir / "train"),
        "rl_dataset_dir": usable.get("rl"),
        "cold_start_dir": usable.get("cold_start"),
        "stages": list(config.train.stages),
        "sft_steps": config.train.sft_steps,
        "max_steps": config.train.max_steps,
        "seed": config.seed,
        "options": config.train.options.model_dump(mode="json", exclude_unset=True),  # only the keys the run set
        "data_root": str(config.data_root),
    }
    if config.train.mode == "subflow":
        from flows.train import train_flow

        train_flow(**parameters)
    elif config.train.mode == "deployment":
        from prefect.deployments import run_deployment

        run_deployment("train/all", parameters=parameters, timeout=0)  # fire and forget


@flow(name="curate", log_prints=True)
def curate(target: Target = "all", config_path: str | None = None, overrides: list[str] | None = None) -> dict[str, str]:
    """Build the cold-start set, the RL set, or both; returns the published folders by set name."""
    config = load_config(config_path, overrides)
    graph = curation_graph(config)  # checked before any work: a mis-wired graph fails here
    run_dir = config.run_dir
    save_resolved(config)
    shards = graph.shards()
    lineage: list[dict] = []  # the stages every set shares; each set's card adds its own selection
    published: dict[str, str] = {}
    cost: dict | None = None  # the generate step's, before any set is published
    for step in graph.plan(SETS if target == "all" else (target,)):
        index_dir = prepare_task(step.index, run_dir, shards) if step.index else None
        stage = step.stage(index_dir)
        summary = run_stage(stage, run_dir, shards)
        if isinstance(stage, GenerateStage):  # once per run: every card shows it
            cost = generation_cost(run_dir, shards, summary["counts"])
            write_cost(run_dir, cost)
        if step.publishes is None:
            lineage.append(summary)
        else:
            assert isinstance(stage, IndexedStage)  # a set is materialised from its selection plan (the step's index)
            set_lineage = lineage + [_with_plan(summary, stage.manifest)]
            published[step.publishes] = _publish(config, stage, shards, set_lineage, step.publishes, cost)
    if "rl" in published and config.train.mode != "none":
        _trigger_training(config, published)
    return published


def _with_plan(summary: dict, plan: dict) -> dict:
    """A set stage's summary with its selection plan's drops, composition and kept counts, for the card."""
    summary["dropped"] = plan["drops"]
    summary["composition"] = plan["composition"]
    summary["counts"]["selected"] = plan["selected"]
    summary["counts"]["target"] = plan["target"]
    summary["counts"].update(plan["kept"])
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=["all", "cold_start", "rl"], default="all")
    parser.add_argument("--config", help="YAML run config (default: the embedded one on the shared data)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. run_name=demo ingest.shard_size=200")
    parser.add_argument("--quiet", action="store_true", help="no progress bars; only the stage summaries and the published folders")
    args = parser.parse_args()
    if args.quiet:
        os.environ[QUIET_ENV] = "1"
    config = load_config(args.config, args.overrides)
    with workers_api(config.task_runner) as api_url, run_log_file(config.run_dir / "logs" / "curate.log") as log_file:
        runner = task_runner_for(config.task_runner, api_url, log_file)
        published = curate.with_options(task_runner=runner)(args.target, args.config, args.overrides)
    for name, folder in published.items():
        print(f"{name}: {folder}")


if __name__ == "__main__":
    main()
