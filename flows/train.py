"""The `train` flow: cold-start SFT -> GRPO + Variance-Aware Sampling from the SFT model -> benchmark evaluation.

Thin by design: all logic is in `pipeline/train` and `pipeline/evaluate`. Each stage is a task that can be left out
(`stages`) and resumes: SFT/GRPO from their newest checkpoint, evaluation shard by shard (one task per shard), and a
stage already finished with the same config is skipped. Served as `train/sft`, `train/grpo-vas`, `train/evaluate`
and `train/all` (flows/deploy.py); the curate flow triggers it. `max_steps=0` for a training stage only checks that
its set loads TRL-ready. Its options are checked (unknown keys named with their nearest spelling) before any stage
runs. Run it directly:

    python -m flows.train --cold-start-dir DIR --rl-dataset-dir DIR --output-dir OUT --sft-steps 20 --max-steps 20
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipeline.config_base import validate_config
from pipeline.evaluate.stage import EvaluateConfig, EvaluateStage, build_reports
from pipeline.paths import default_data_root
from pipeline.stage import run_shard
from pipeline.train.chain import (
    STAGES,
    TrainChainConfig,
    TrainOptions,
    base_model,
    done_result,
    evaluate_config,
    grpo_config,
    mark_stage_done,
    sft_config,
    stage_is_done,
    stage_key,
)
from pipeline.train.run import chosen_start, run_training
from pipeline.train.sft import run_sft


def _once(name: str, config, run, data_dir: Path, start: Path | None) -> dict:
    """Run a training stage unless its folder records it finished on the same data, weights and settings."""
    if not config.max_steps:  # a validation-only pass leaves nothing to reuse
        return run(config).__dict__
    key = stage_key(config, data_dir, start)
    if stage_is_done(config.output_dir, key):
        get_run_logger().info("%s: already finished on this data with this config, skipped", name)
        return done_result(config.output_dir)
    result = run(config).__dict__
    mark_stage_done(config.output_dir, key, result)
    return result


@task(cache_policy=NO_CACHE, task_run_name="sft")
def sft_task(chain: TrainChainConfig, base: Path | None) -> dict:
    config = sft_config(chain, base)
    return _once("sft", config, run_sft, config.cold_start_dir, config.model_path)


@task(cache_policy=NO_CACHE, task_run_name="grpo-vas")
def grpo_task(chain: TrainChainConfig, base: Path | None) -> dict:
    config = grpo_config(chain, base)
    return _once("grpo-vas", config, run_training, config.rl_dataset_dir, chosen_start(config))


@task(retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE, task_run_name="evaluate:{shard}")
def evaluate_shard_task(stage: EvaluateStage, run_dir: Path, shard: str) -> int:
    return run_shard(stage, run_dir, shard).rows


def evaluate_chain(chain: TrainChainConfig, base: Path | None, data_root: Path) -> dict:
    config = evaluate_config(chain, base)
    if not config.models and config.backend.kind != "recorded":
        get_run_logger().info("evaluate: no model to evaluate (nothing trained, no model_path), skipped")
        return {}
    run_dir = chain.output_dir / "evaluate"
    stage = EvaluateStage(config, data_root)
    try:  # one shard at a time: in-process engines are not thread-safe, a server backend keeps a shard in flight
        for shard in stage.shards():
            evaluate_shard_task(stage, run_dir, shard)
    finally:
        stage.release()  # one shard at a time in this process: its engine and verifier live here
    return build_reports(stage, run_dir, run_dir / "reports")


@flow(name="train", log_prints=True)
def train_flow(
    output_dir: str,
    rl_dataset_dir: str | None = None,
    cold_start_dir: str | None = None,
    stages: list[str] | None = None,
    model_path: str | None = None,
    max_steps: int = 2,
    sft_steps: int = 2,
    max_rows: int | None = None,
    seed: int = 0,
    vas_lambda: float | None = None,  # None: VASConfig's default
    options: dict[str, Any] | None = None,
    data_root: str | None = None,
) -> dict[str, Any]:
    """`options`: TrainOptions as a mapping, {"sft": {SFTSettings fields}, "grpo": {GRPOSettings fields, e.g.
    "start_from": "base"}, "evaluate": {EvaluateConfig fields}}; the flat arguments are the common knobs, which
    `options` overrides."""
    options = dict(options or {})
    validate_config(TrainOptions, options)  # named misspellings before the flat knobs are merged in
    sft = {"max_steps": sft_steps, "max_rows": max_rows, **options.get("sft", {})}
    grpo = {"max_steps": max_steps, "max_rows": max_rows, **options.get("grpo", {})}
    grpo["vas"] = {**({} if vas_lambda is None else {"vas_lambda": vas_lambda}), **grpo.get("vas", {})}
    where = dict(output_dir=output_dir, cold_start_dir=cold_start_dir, rl_dataset_dir=rl_dataset_dir, model_path=model_path)
    chain = validate_config(
        TrainChainConfig, {**options, "sft": sft, "grpo": grpo, **where, "stages": stages or list(STAGES), "seed": seed}
    )
    logger = get_run_logger()
    base = base_model(chain)
    results: dict[str, Any] = {}
    if "sft" in chain.stages and chain.cold_start_dir:
        results["sft"] = sft_task(chain, base)
        logger.info("sft: %d steps, losses %s", results["sft"]["steps"], results["sft"]["losses"][-3:])
    if "grpo-vas" in chain.stages and chain.rl_dataset_dir:
        results["grpo-vas"] = grpo_task(chain, base)
        grpo_result = results["grpo-vas"]
        logger.info("RL set %s: %d rows (%d with images) TRL-ready", rl_dataset_dir, grpo_result["rows"], grpo_result["rows_with_images"])
        if grpo_result["steps"]:
            logger.info("grpo-vas from %s: %d steps; last log %s", grpo_result["model_path"], grpo_result["steps"], grpo_result["final_metrics"])
    if "evaluate" in chain.stages:
        results["evaluate"] = evaluate_chain(chain, base, Path(data_root) if data_root else default_data_root())
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Cold-start SFT, then GRPO + VAS, then benchmark evaluation.")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--cold-start-dir")
    parser.add_argument("--rl-dataset-dir")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--model-path")
    parser.add_argument("--sft-steps", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=2, help="GRPO steps")
    parser.add_argument("--max-rows", type=int)
    parser.add_argument("--vas-lambda", type=float, help="share of each batch drawn by VAS (default: VASConfig's)")
    parser.add_argument("--save-steps", type=int, default=0, help="checkpoint every N steps (0: none)")
    parser.add_argument("--start-from", default="sft", help="GRPO's start: sft (when there is one), base, or a model path")
    parser.add_argument("--eval-problems", type=int, help="evaluate the first N problems of each benchmark (default: all)")
    parser.add_argument("--eval-max-tokens", type=int, help="tokens per evaluation answer (default: EvaluateConfig's)")
    parser.add_argument("--options", type=json.loads, default={}, help='JSON, e.g. \'{"evaluate": {"samples": 4}}\'')
    args = parser.parse_args(argv)
    options = dict(args.options)
    for stage in ("sft", "grpo"):
        options[stage] = {"save_steps": args.save_steps, **options.get(stage, {})}
    options["grpo"].setdefault("start_from", args.start_from)
    evaluate = options["evaluate"] = dict(options.get("evaluate", {}))
    if args.eval_problems is not None:
        evaluate.setdefault("problems_per_benchmark", args.eval_problems)
    if args.eval_max_tokens is not None:  # on top of the evaluation's default sampling, not SamplingParams' defaults
        evaluate["sampling"] = {**EvaluateConfig().sampling.model_dump(), "max_tokens": args.eval_max_tokens, **evaluate.get("sampling", {})}
    result = train_flow(
        args.output_dir, args.rl_dataset_dir, args.cold_start_dir, args.stages, args.model_path,
        args.max_steps, args.sft_steps, args.max_rows, 0, args.vas_lambda, options,
    )
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
