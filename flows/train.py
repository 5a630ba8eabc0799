"""The `train` flow: validate the RL set, then GRPO + Variance-Aware Sampling (TRL) for `max_steps` steps.

Thin by design: all logic is in `pipeline/train`. `max_steps=0` only checks that the RL set is TRL-ready and
returns its row count. Served as the `train/grpo-vas` deployment (flows/deploy.py); the curate flow calls it.
Run it directly: `python -m flows.train --rl-dataset-dir DIR --output-dir OUT --max-steps 2`.
"""

from __future__ import annotations

import argparse
from typing import Any

from prefect import flow, get_run_logger

from pipeline.config_base import validate_config
from pipeline.train.config import TrainConfig
from pipeline.train.run import run_training


@flow(name="train", log_prints=True)
def train_flow(
    rl_dataset_dir: str,
    output_dir: str,
    model_path: str | None = None,
    max_steps: int = 2,
    max_rows: int | None = None,
    seed: int = 0,
    vas_lambda: float = 0.5,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`options` holds any further TrainConfig field, e.g. {"num_generations": 8, "vas": {"scoring_rollouts": 4}}."""
    vas = {"vas_lambda": vas_lambda, **(options or {}).get("vas", {})}
    fields = dict(rl_dataset_dir=rl_dataset_dir, output_dir=output_dir, model_path=model_path, max_steps=max_steps)
    fields |= dict(max_rows=max_rows, seed=seed, vas=vas)
    config = validate_config(TrainConfig, {**fields, **{key: value for key, value in (options or {}).items() if key != "vas"}})
    result = run_training(config)
    logger = get_run_logger()
    logger.info("RL set %s: %d rows (%d with images) TRL-ready", rl_dataset_dir, result.rows, result.rows_with_images)
    if max_steps:
        logger.info("trained %d steps; last log %s", result.steps, result.final_metrics)
    return result.__dict__


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="GRPO + VAS on a published RL set.")
    parser.add_argument("--rl-dataset-dir", required=True)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--model-path")
    parser.add_argument("--max-steps", type=int, default=2)
    parser.add_argument("--max-rows", type=int)
    parser.add_argument("--vas-lambda", type=float, default=0.5)
    parser.add_argument("--save-steps", type=int, default=0, help="checkpoint every N steps (0: none)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output-dir")
    args = parser.parse_args(argv)
    options = {"save_steps": args.save_steps, "resume": args.resume}
    print(train_flow(args.rl_dataset_dir, args.output_dir, args.model_path, args.max_steps, args.max_rows, 0, args.vas_lambda, options))


if __name__ == "__main__":
    main()
