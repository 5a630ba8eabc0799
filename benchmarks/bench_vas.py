"""Uniform vs Variance-Aware Sampling for GRPO on a task a tiny model learns on CPU in minutes.

    python benchmarks/bench_vas.py [--seeds 3] [--steps 60] [--out runs/bench_vas]

Task: integer addition with a difficulty mix (one-digit pairs, two-digit pairs, three operands), answered as
"<think>a+b=c</think> \\boxed{c}". A tiny Qwen2 model gets a brief SFT on generated worked answers, so it
solves the easy items, misses the hard ones and is in between on the rest: the regime where most uniform GRPO
groups are all-correct or all-wrong. Then GRPO (TRL, the project's verifier rewards) runs with lambda = 0
(TRL's uniform sampler, exactly) and with VAS, the same seeds and budget. Reported per arm (mean over seeds):
zero-variance accuracy groups, steps until the held-out greedy accuracy first reaches the target, and VAS's
share of step time (table updates + weighted draws over train time).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datasets  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from pipeline.models.tiny import TinyTextConfig, build_tiny_text_lm, train_tokenizer  # noqa: E402
from pipeline.train.config import TrainConfig  # noqa: E402
from pipeline.train.plots import plot_curves, vps_bin_edges, vps_transition_matrix, plot_transition_matrix  # noqa: E402
from pipeline.train.rewards import AccuracyReward, completion_text  # noqa: E402
from pipeline.train.run import build_trainer  # noqa: E402
from pipeline.train.trl_trainer import VASConfig  # noqa: E402

LEVELS = ("one_digit", "two_digit", "three_terms")


def make_problem(rng: random.Random, level: str) -> tuple[str, int, str]:
    """Question, answer and the worked completion of one addition item."""
    if level == "one_digit":
        terms = [rng.randint(0, 9), rng.randint(0, 9)]
    elif level == "two_digit":
        terms = [rng.randint(10, 99), rng.randint(10, 99)]
    else:
        terms = [rng.randint(10, 99), rng.randint(10, 99), rng.randint(0, 9)]
    expression = "+".join(map(str, terms))
    answer = sum(terms)
    return f"{expression}=", answer, f"<think>{expression}={answer}</think> \\boxed{{{answer}}}"


def make_split(rng: random.Random, size: int, mix: tuple[float, ...]) -> list[dict]:
    rows = []
    for number in range(size):
        level = rng.choices(LEVELS, weights=mix)[0]
        question, answer, worked = make_problem(rng, level)
        rows.append({"problem_id": f"{level}-{number}", "prompt": question, "answer": str(answer),
                     "answer_type": "integer", "worked": worked, "level": level})
    return rows


def supervised_warmup(model_dir: Path, rows: list[dict], steps: int, seed: int, batch: int = 64, lr: float = 3e-3) -> None:
    """Brief SFT on worked answers (loss on the completion + end token only), saved back to `model_dir`."""
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
    rng = random.Random(seed)
    model.train()
    for _ in range(steps):
        chosen = rng.sample(rows, batch)
        prompts = [tokenizer(row["prompt"]).input_ids for row in chosen]
        completions = [tokenizer(row["worked"]).input_ids + [tokenizer.eos_token_id] for row in chosen]
        width = max(len(p) + len(c) for p, c in zip(prompts, completions))
        ids = torch.full((batch, width), tokenizer.pad_token_id)
        labels = torch.full((batch, width), -100)
        for row, (p, c) in enumerate(zip(prompts, completions)):
            ids[row, : len(p) + len(c)] = torch.tensor(p + c)
            labels[row, len(p) : len(p) + len(c)] = torch.tensor(c)
        loss = model(input_ids=ids, attention_mask=(labels != -100) | (ids != tokenizer.pad_token_id), labels=labels).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    model.save_pretrained(model_dir)


def greedy_accuracy(model, tokenizer, rows: list[dict], reward: AccuracyReward, max_new_tokens: int) -> float:
    was_training = model.training
    model.eval()
    tokenizer.padding_side = "left"
    inputs = tokenizer([row["prompt"] for row in rows], return_tensors="pt", padding=True)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    texts = tokenizer.batch_decode(output[:, inputs.input_ids.shape[1] :], skip_special_tokens=True)
    model.train(was_training)
    return statistics.mean(reward(texts, answer=[row["answer"] for row in rows], answer_type=["integer"] * len(rows)))


class HeldOutAccuracy(TrainerCallback):
    """Greedy accuracy on the held-out items every `every` steps (and at step 0)."""

    def __init__(self, tokenizer, rows: list[dict], every: int, max_new_tokens: int):
        self.tokenizer, self.rows, self.every, self.max_new_tokens = tokenizer, rows, every, max_new_tokens
        self.reward = AccuracyReward()
        self.curve: list[tuple[int, float]] = []

    def _measure(self, model, step: int) -> None:
        self.curve.append((step, greedy_accuracy(model, self.tokenizer, self.rows, self.reward, self.max_new_tokens)))

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._measure(model, 0)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            self._measure(model, state.global_step)


@dataclass
class ArmRun:
    arm: str
    seed: int
    zero_variance: list[tuple[int, float]] = field(default_factory=list)
    held_out: list[tuple[int, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    vas_seconds: float = 0.0
    vps_first_last: tuple[list[float], list[float]] | None = None

    @property
    def mean_zero_variance(self) -> float:
        return statistics.mean(value for _, value in self.zero_variance)

    def steps_to(self, target: float, budget: int) -> int | None:
        return next((step for step, accuracy in self.held_out if accuracy >= target), None)


def run_arm(args, arm: str, vas_lambda: float, seed: int, model_dir: Path, train: datasets.Dataset, held_out: list[dict]) -> ArmRun:
    output_dir = args.out / f"{arm}-seed{seed}"
    config = TrainConfig(
        rl_dataset_dir=output_dir, output_dir=output_dir, model_path=model_dir, max_steps=args.steps, seed=seed,
        num_generations=args.generations, prompts_per_step=args.prompts_per_step,
        max_completion_length=args.max_completion_length, learning_rate=args.lr, temperature=1.0,
        vas=VASConfig(vas_lambda=vas_lambda, seed_from_pass_rate=False),
    )
    trainer = build_trainer(config, train, model_dir)
    evaluator = HeldOutAccuracy(trainer.processing_class, held_out, args.eval_every, args.max_completion_length)
    trainer.add_callback(evaluator)
    output = trainer.train()
    trainer.close_rewards()
    evaluator.reward.close()
    snapshots = trainer.vas_history.vps_snapshots
    return ArmRun(
        arm=arm, seed=seed, zero_variance=trainer.vas_history.zero_variance_fraction, held_out=evaluator.curve,
        train_seconds=output.metrics["train_runtime"], vas_seconds=trainer.vas_seconds(),
        vps_first_last=(snapshots[0][1], snapshots[-1][1]) if snapshots else None,
    )


def mean_curve(runs: list[ArmRun], attribute: str) -> list[tuple[int, float]]:
    by_step: dict[int, list[float]] = {}
    for run in runs:
        for step, value in getattr(run, attribute):
            by_step.setdefault(step, []).append(value)
    return [(step, statistics.mean(values)) for step, values in sorted(by_step.items())]


def summarise(runs: dict[str, list[ArmRun]], target: float, budget: int) -> dict:
    summary = {}
    for arm, arm_runs in runs.items():
        steps = [run.steps_to(target, budget) for run in arm_runs]
        summary[arm] = {
            "zero_variance_fraction": statistics.mean(run.mean_zero_variance for run in arm_runs),
            "steps_to_target": steps,
            # A run that never reaches the target counts as the whole budget (a lower bound on its real steps).
            "mean_steps_to_target": statistics.mean(budget if s is None else s for s in steps),
            "final_held_out": statistics.mean(run.held_out[-1][1] for run in arm_runs),
            "vas_share_of_step_time": sum(r.vas_seconds for r in arm_runs) / sum(r.train_seconds for r in arm_runs),
            "seconds_per_run": statistics.mean(run.train_seconds for run in arm_runs),
        }
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--vas-lambda", type=float, default=0.5)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--max-completion-length", type=int, default=20)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--sft-steps", type=int, default=250)
    parser.add_argument("--train-size", type=int, default=256)
    parser.add_argument("--held-out", type=int, default=96)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--target", type=float, default=None, help="held-out accuracy; default: start + 0.1")
    parser.add_argument("--mix", type=float, nargs=3, default=(0.3, 0.5, 0.2), help="share of each level")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_vas"))
    args = parser.parse_args(argv)
    hf_logging.set_verbosity_error()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    rng = random.Random(0)
    train_rows = make_split(rng, args.train_size, tuple(args.mix))
    held_out = make_split(rng, args.held_out, tuple(args.mix))
    sft_rows = make_split(rng, 4000, tuple(args.mix))
    corpus = [row["prompt"] + row["worked"] for row in sft_rows]
    model_dir = build_tiny_text_lm(args.out / "sft-model", seed=0, config=TinyTextConfig(vocab_size=320),
                                   tokenizer=train_tokenizer(corpus, vocab_size=320, vision=False))
    supervised_warmup(model_dir, sft_rows, args.sft_steps, seed=0)
    train = datasets.Dataset.from_list([{k: v for k, v in row.items() if k != "worked"} for row in train_rows])
    print(f"SFT warm-up: {args.sft_steps} steps, {time.perf_counter() - started:.0f}s", flush=True)

    arms = {"uniform": 0.0, "vas": args.vas_lambda}
    runs: dict[str, list[ArmRun]] = {arm: [] for arm in arms}
    for seed in range(args.seeds):
        for arm, vas_lambda in arms.items():
            run = run_arm(args, arm, vas_lambda, seed, model_dir, train, held_out)
            runs[arm].append(run)
            print(f"{arm:7s} seed {seed}: zero-variance {run.mean_zero_variance:.3f}, held-out "
                  f"{run.held_out[0][1]:.3f} -> {run.held_out[-1][1]:.3f}, {run.train_seconds:.0f}s", flush=True)

    start_accuracy = statistics.mean(run.held_out[0][1] for arm_runs in runs.values() for run in arm_runs)
    target = args.target if args.target is not None else round(start_accuracy + 0.1, 3)
    summary = summarise(runs, target, args.steps)
    uniform, vas = summary["uniform"], summary["vas"]
    print(f"\nheld-out accuracy at step 0: {start_accuracy:.3f}; target {target}; budget {args.steps} steps x "
          f"{args.prompts_per_step} prompts x {args.generations} rollouts; {args.seeds} seeds")
    print(f"{'arm':8s} {'zero-var groups':>16s} {'steps to target':>22s} {'final acc':>10s} {'VAS share':>10s}")
    for arm, row in summary.items():
        steps = ",".join("-" if s is None else str(s) for s in row["steps_to_target"])
        print(f"{arm:8s} {row['zero_variance_fraction']:16.3f} {row['mean_steps_to_target']:10.1f} ({steps:>9s}) "
              f"{row['final_held_out']:10.3f} {row['vas_share_of_step_time']:10.4%}")
    reduction = 1 - vas["zero_variance_fraction"] / uniform["zero_variance_fraction"]
    ratio = vas["mean_steps_to_target"] / uniform["mean_steps_to_target"]
    print(f"\nzero-variance groups: {reduction:+.1%} fewer with VAS (goal >= 30%)")
    print(f"steps to target: VAS / uniform = {ratio:.2f} (goal <= 0.8; unreached runs count as the full budget)")
    print(f"VAS overhead: {vas['vas_share_of_step_time']:.3%} of step time (goal <= 1%)")

    plot_curves({arm: mean_curve(r, "zero_variance") for arm, r in runs.items()}, "zero-variance group fraction",
                args.out / "zero_variance.png")
    plot_curves({arm: mean_curve(r, "held_out") for arm, r in runs.items()}, "held-out greedy accuracy",
                args.out / "held_out_accuracy.png")
    vas_run = runs["vas"][0]
    if vas_run.vps_first_last:
        edges = vps_bin_edges(1.0)
        matrix = vps_transition_matrix(*vas_run.vps_first_last, edges)
        plot_transition_matrix(matrix, edges, "VAS seed 0: VPS bins, first -> last", args.out / "vps_transitions.png")
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "target": target, "summary": summary,
               "runs": {arm: [asdict(run) for run in arm_runs] for arm, arm_runs in runs.items()}}
    (args.out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(f"plots and results.json in {args.out}; total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
