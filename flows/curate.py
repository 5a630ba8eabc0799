"""The `curate` flow: ingest -> dedupe, decontam -> generate -> verify -> score (difficulty, diversity,
problem type) -> select -> publish -> train.

Thin by design: every stage comes from `pipeline/`; the flow only fans shards out as tasks (paths in,
markers out, never DataFrames) and chains stages. Finished shards are skipped by their markers, so
rerunning the flow after a crash resumes it. Run it directly: `python -m flows.curate --target rl`.
"""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.progress import run_log_file, wait_with_progress
from flows.runners import task_runner_for, workers_api
from pipeline.config import RunConfig, load_config, save_resolved
from pipeline.decontam.stage import BenchmarkSnapshot, DecontamStage
from pipeline.dedupe.stage import DedupeIndex, DedupeStage
from pipeline.generate.factory import backend_identity, make_backend
from pipeline.generate.stage import GenerateStage
from pipeline.index import GlobalStep
from pipeline.ingest.stage import IngestStage
from pipeline.progress import QUIET_ENV, SUMMARY, stage_summary_line
from pipeline.publish import publish_dataset, push_folder
from pipeline.publish.dataset import published_empty_reason, published_rows
from pipeline.publish.empty import empty_set_reason
from pipeline.publish.exports import export_published
from pipeline.score.difficulty import DifficultyStage
from pipeline.score.diversity import ClusterCentroids, DiversityStage
from pipeline.score.problem_type import ProblemTypeStage, TypeClassifier
from pipeline.select.plan import SelectionPlan
from pipeline.select.stage import ColdStartStage, RLStage
from pipeline.stage import Stage, run_shard, summarise_stage
from pipeline.verify.stage import VerifyStage
from schemas import COLD_START_SCHEMA, RL_SCHEMA

Target = Literal["all", "cold_start", "rl"]


# Markers make shards idempotent, so a retried task redoes at most its own shard.
@task(retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE, task_run_name="{stage.name}:{shard}")
def shard_task(stage: Stage, run_dir: Path, shard: str) -> dict:
    marker = run_shard(stage, run_dir, shard)
    return {"shard": marker.shard, "rows": marker.rows}


@task(cache_policy=NO_CACHE, task_run_name="prepare:{step.name}")
def prepare_task(step: GlobalStep, run_dir: Path, shards: list[str]) -> Path:
    """A global step (an index over all shards): streams the shards, skips itself when up to date."""
    return step.prepare(run_dir, shards)


def run_stage(stage: Stage, run_dir: Path, shards: list[str]) -> dict:
    futures = [shard_task.submit(stage, run_dir, shard) for shard in shards]
    try:
        wait_with_progress(stage.name, futures)
        for future in futures:
            future.result()  # re-raise the first failure with its shard named in the task run
    finally:
        stage.close()  # its engine or worker pool; remote task workers close theirs at exit
    summary = summarise_stage(run_dir, stage.name, shards)
    get_run_logger().info(stage_summary_line(summary), extra=SUMMARY)
    return summary


def _select_and_publish(config: RunConfig, which: str, shards: list[str], annotations: list[str], lineage: list[dict]) -> str:
    """Plan the set globally, build its shards, publish it with a card of the whole lineage."""
    plan = prepare_task(SelectionPlan(config.select, which, annotations, config.seed), config.run_dir, shards)
    stage, schema, repo_id = {
        "cold_start": (ColdStartStage(plan), COLD_START_SCHEMA, config.publish.cold_start_repo_id),
        "rl": (RLStage(plan), RL_SCHEMA, config.publish.rl_repo_id),
    }[which]
    summary = run_stage(stage, config.run_dir, shards)
    plan_summary = stage.manifest
    summary["dropped"] = plan_summary["drops"]
    summary["composition"] = plan_summary["composition"]
    summary["counts"]["selected"] = plan_summary["selected"]
    summary["counts"]["target"] = plan_summary["target"]
    summary["counts"].update(plan_summary["kept"])
    return _publish(config, stage, schema, shards, lineage + [summary], repo_id)


def _publish(config: RunConfig, stage: Stage, schema, shards: list[str], lineage: list[dict], repo_id: str | None) -> str:
    """Publish the set; an empty one is published too, its card saying why, and nothing is exported or pushed
    (a push would replace the repository's last set with no rows)."""
    licenses = {source.name: source.license for source in config.sources}
    empty = lineage[-1]["counts"]["rows_out"] == 0
    reason = empty_set_reason(stage.name, lineage, config.select.model_dump()) if empty else None
    folder = publish_dataset(config.run_dir, stage.name, schema, config.publish, lineage, shards, licenses, reason)
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
    parameters = {
        "output_dir": str(config.run_dir / "train"),
        "rl_dataset_dir": usable.get("rl"),
        "cold_start_dir": usable.get("cold_start"),
        "stages": list(config.train.stages),
        "sft_steps": config.train.sft_steps,
        "max_steps": config.train.max_steps,
        "seed": config.seed,
        "options": config.train.options,
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
    run_dir = config.run_dir
    save_resolved(config)

    ingest = IngestStage(config.ingest, config.sources, config.data_root)
    shards = ingest.shards()
    lineage = [run_stage(ingest, run_dir, shards)]
    # Judge problems before generating: no teacher compute for duplicates or benchmark copies.
    dedupe_index = prepare_task(DedupeIndex(config.dedupe), run_dir, shards)
    lineage.append(run_stage(DedupeStage(config.dedupe, dedupe_index), run_dir, shards))
    decontam_index = prepare_task(BenchmarkSnapshot(config.decontam, config.data_root), run_dir, shards)
    lineage.append(run_stage(DecontamStage(config.decontam, decontam_index), run_dir, shards))
    judgements = ["dedupe", "decontam"]
    generate = GenerateStage(
        config.generate,
        functools.partial(make_backend, config.backend, config.data_root),
        backend_identity(config.backend),
        run_dir,
        annotation_stages=judgements,
    )
    lineage.append(run_stage(generate, run_dir, shards))
    lineage.append(run_stage(VerifyStage(config.verify), run_dir, shards))

    # Both sets need the policy's pass rates (the cold-start difficulty band) and the problem types.
    lineage.append(run_stage(DifficultyStage(config.score), run_dir, shards))
    diversity_index = prepare_task(ClusterCentroids(config.diversity), run_dir, shards)
    lineage.append(run_stage(DiversityStage(config.diversity, diversity_index), run_dir, shards))
    types_index = prepare_task(TypeClassifier(config.problem_type), run_dir, shards)
    lineage.append(run_stage(ProblemTypeStage(config.problem_type, types_index), run_dir, shards))
    scores = ["problem_type"]

    published: dict[str, str] = {}
    if target in ("all", "cold_start"):
        published["cold_start"] = _select_and_publish(config, "cold_start", shards, judgements + scores, lineage)
    if target in ("all", "rl"):
        published["rl"] = _select_and_publish(config, "rl", shards, judgements + scores + ["diversity"], lineage)
        if config.train.mode != "none":
            _trigger_training(config, published)
    return published


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
    with workers_api(config.task_runner) as api_url, run_log_file(config.run_dir / "logs" / "curate.log"):
        runner = task_runner_for(config.task_runner, api_url)
        published = curate.with_options(task_runner=runner)(args.target, args.config, args.overrides)
    for name, folder in published.items():
        print(f"{name}: {folder}")


if __name__ == "__main__":
    main()
