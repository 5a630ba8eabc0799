"""Uniform vs Variance-Aware Sampling for GRPO on a task a tiny model learns on CPU in minutes.

    python benchmarks/bench_vas.py [--scenarios saturated balanced] [--seeds 10] [--steps 60] [--vas-lambdas 0.5 1.0]

Task: integer additions of three difficulty levels (one-digit pairs, two-digit pairs, three terms), answered as
"<think>a+b=c</think> \\boxed{c}". A tiny Qwen2 model gets a brief SFT on generated worked answers whose
correctness depends on the level (mostly right, a coin flip, mostly off by one or two), so the policy starts
with the spread of per-prompt pass rates RL sees in practice: easy prompts give all-correct groups, hard ones
all-wrong groups, neither teaches GRPO anything. Each prompt gets an offline pass rate from k = 8 rollouts of the
warm-started policy, as the curate flow writes `pass_rate` into the RL set; VAS seeds its score table from it
(uniform ignores it). Then GRPO (TRL, the project's verifier rewards) runs with lambda = 0 (TRL's uniform
sampler, exactly) and with VAS, same seeds and budget, in two task mixes (SCENARIOS). Reported per arm (mean
over seeds): the fraction of zero-variance accuracy groups, steps until the sampled pass rate on the prompts
first reaches the target, and VAS's share of step time (table updates + weighted draws over train time).
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
from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from pipeline.models.tiny import TinyTextConfig, build_tiny_text_lm, train_tokenizer  # noqa: E402
from pipeline.train.config import TrainConfig, VASConfig  # noqa: E402
from pipeline.train.plots import (  # noqa: E402
    first_mostly_scored,
    plot_curves,
    plot_transition_matrix,
    vps_bin_edges,
    vps_transition_matrix,
)
from pipeline.train.rewards import AccuracyReward  # noqa: E402
from pipeline.train.run import build_trainer  # noqa: E402


LEVELS = ("one_digit", "two_digit", "three_terms")
# Chance that an SFT worked answer is right, per level: what the warm-started policy's pass rate drifts to.
SFT_CORRECTNESS = {"one_digit": 0.9, "two_digit": 0.5, "three_terms": 0.15}


def make_question(rng: random.Random, level: str) -> tuple[str, int]:
    if level == "one_digit":
        terms = [rng.randint(0, 9), rng.randint(0, 9)]
    elif level == "two_digit":
        terms = [rng.randint(10, 99), rng.randint(10, 99)]
    else:
        terms = [rng.randint(10, 99), rng.randint(10, 99), rng.randint(0, 9)]
    return "+".join(map(str, terms)), sum(terms)


def worked_answer(expression: str, value: int) -> str:
    return f"<think>{expression}={value}</think> \\boxed{{{value}}}"


def make_prompts(rng: random.Random, size: int, mix: tuple[float, ...]) -> list[dict]:
    rows = []
    for number in range(size):
        level = rng.choices(LEVELS, weights=mix)[0]
        expression, answer = make_question(rng, level)
        rows.append({"problem_id": f"{level}-{number}", "prompt": f"{expression}=", "answer": str(answer),
                     "answer_type": "integer", "level": level})
    return rows


def sft_examples(rng: random.Random, prompts: list[dict], per_prompt: int) -> list[tuple[str, str]]:
    """Worked answers, right with the level's SFT_CORRECTNESS, else off by one or two."""
    examples = []
    for row in prompts:
        expression, answer = row["prompt"][:-1], int(row["answer"])
        for _ in range(per_prompt):
            value = answer if rng.random() < SFT_CORRECTNESS[row["level"]] else answer + rng.choice((-2, -1, 1, 2))
            examples.append((row["prompt"], worked_answer(expression, value)))
    return examples


def supervised_warmup(model_dir: Path, examples: list[tuple[str, str]], steps: int, batch: int = 64, lr: float = 3e-3) -> None:
    """Brief SFT (loss on the completion + end token only), saved back to `model_dir`."""
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
    rng = random.Random(0)
    model.train()
    for _ in range(steps):
        chosen = rng.sample(examples, batch)
        prompts = [tokenizer(prompt).input_ids for prompt, _ in chosen]
        completions = [tokenizer(completion).input_ids + [tokenizer.eos_token_id] for _, completion in chosen]
        width = max(len(p) + len(c) for p, c in zip(prompts, completions))
        ids = torch.full((batch, width), tokenizer.pad_token_id)
        labels = torch.full((batch, width), -100)
        attention = torch.zeros((batch, width), dtype=torch.long)
        for row, (p, c) in enumerate(zip(prompts, completions)):
            ids[row, : len(p) + len(c)] = torch.tensor(p + c)
            labels[row, len(p) : len(p) + len(c)] = torch.tensor(c)
            attention[row, : len(p) + len(c)] = 1
        model(input_ids=ids, attention_mask=attention, labels=labels).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    model.save_pretrained(model_dir)


def sampled_pass_rates(model, tokenizer, rows: list[dict], reward: AccuracyReward, samples: int, max_new_tokens: int,
                       noise_seed: int = 1234) -> list[float]:
    """Per prompt, the mean accuracy of `samples` temperature-1 completions (the quantity GRPO maximises)."""
    was_training = model.training
    model.eval()
    tokenizer.padding_side = "left"
    prompts = [row["prompt"] for row in rows for _ in range(samples)]
    inputs = tokenizer(prompts, return_tensors="pt", padding=True)
    torch.manual_seed(noise_seed)  # the same sampling noise at every evaluation: differences come from the policy
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=True, temperature=1.0, top_k=0,
                                top_p=1.0, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    texts = tokenizer.batch_decode(output[:, inputs.input_ids.shape[1] :], skip_special_tokens=True)
    model.train(was_training)
    answers = [row["answer"] for row in rows for _ in range(samples)]
    correct = reward(texts, answer=answers, answer_type=["integer"] * len(texts))
    return [statistics.mean(correct[i : i + samples]) for i in range(0, len(correct), samples)]


def attach_offline_pass_rates(model_dir: Path, prompts: list[dict], samples: int, max_new_tokens: int) -> None:
    """Each prompt's `pass_rate` under the warm-started policy, as the curate flow's difficulty stage writes it into
    the RL set; VAS seeds its score table from it (uniform ignores it). Own sampling noise, not the probe's."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    reward = AccuracyReward()
    try:
        rates = sampled_pass_rates(model, tokenizer, prompts, reward, samples, max_new_tokens, noise_seed=4321)
    finally:
        reward.close()
    for row, rate in zip(prompts, rates):
        row["pass_rate"] = rate


class PassRateProbe(TrainerCallback):
    """Sampled pass rate on the training prompts at step 0 and every `every` steps."""

    def __init__(self, tokenizer, rows: list[dict], every: int, samples: int, max_new_tokens: int):
        self.tokenizer, self.rows, self.every = tokenizer, rows, every
        self.samples, self.max_new_tokens = samples, max_new_tokens
        self.reward = AccuracyReward()
        self.curve: list[tuple[int, float]] = []
        self.by_level: dict[str, list[tuple[int, float]]] = {level: [] for level in LEVELS}

    def _measure(self, model, step: int) -> None:
        rates = sampled_pass_rates(model, self.tokenizer, self.rows, self.reward, self.samples, self.max_new_tokens)
        self.curve.append((step, statistics.mean(rates)))
        for level in LEVELS:
            self.by_level[level].append((step, statistics.mean(r for r, row in zip(rates, self.rows) if row["level"] == level)))

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
    pass_rate: list[tuple[int, float]] = field(default_factory=list)
    pass_rate_by_level: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    train_seconds: float = 0.0
    vas_seconds: float = 0.0
    vps_first_last: tuple[list[float | None], list[float | None]] | None = None

    @property
    def mean_zero_variance(self) -> float:
        return statistics.mean(value for _, value in self.zero_variance)

    def steps_to(self, target: float) -> int | None:
        return next((step for step, rate in self.pass_rate if rate >= target), None)


def run_arm(args, out: Path, arm: str, vas_lambda: float, seed: int, model_dir: Path, prompts: list[dict]) -> ArmRun:
    output_dir = out / f"{arm}-seed{seed}"
    config = TrainConfig(
        rl_dataset_dir=output_dir, output_dir=output_dir, model_path=model_dir, max_steps=args.steps, seed=seed,
        num_generations=args.generations, prompts_per_step=args.prompts_per_step,
        max_completion_length=args.max_completion_length, learning_rate=args.lr, lr_scheduler_type="constant",
        vas=VASConfig(vas_lambda=vas_lambda, seed_from_pass_rate=args.scoring_samples > 0),
    )
    trainer = build_trainer(config, datasets.Dataset.from_list(prompts), model_dir)
    trainer.remove_callback(PrinterCallback)  # one summary line per run instead of a log dict per step
    probe = PassRateProbe(trainer.processing_class, prompts, args.eval_every, args.eval_samples, args.max_completion_length)
    trainer.add_callback(probe)
    output = trainer.train()
    trainer.close_rewards()
    probe.reward.close()
    snapshots = trainer.vas_history.vps_snapshots
    return ArmRun(
        arm=arm, seed=seed, zero_variance=trainer.vas_history.zero_variance_fraction, pass_rate=probe.curve, pass_rate_by_level=probe.by_level,
        train_seconds=output.metrics["train_runtime"], vas_seconds=trainer.vas_seconds(),
        vps_first_last=(first_mostly_scored(snapshots)[1], snapshots[-1][1]) if snapshots else None,
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
        steps = [run.steps_to(target) for run in arm_runs]
        summary[arm] = {
            "zero_variance_fraction": statistics.mean(run.mean_zero_variance for run in arm_runs),
            "steps_to_target": steps,
            # A run that never reaches the target counts as the whole budget (a lower bound on its real steps).
            "mean_steps_to_target": statistics.mean(budget if s is None else s for s in steps),
            "final_pass_rate": statistics.mean(run.pass_rate[-1][1] for run in arm_runs),
            "pass_rate_by_level": {
                level: [statistics.mean(run.pass_rate_by_level[level][i][1] for run in arm_runs) for i in (0, -1)]
                for level in LEVELS
            },
            # Median over runs: the process's first run also pays one-off warm-up costs inside the VAS hooks.
            "vas_share_of_step_time": statistics.median(r.vas_seconds / r.train_seconds for r in arm_runs),
            "seconds_per_run": statistics.mean(run.train_seconds for run in arm_runs),
        }
    return summary


# Task mixes (share of one-digit, two-digit, three-term prompts). "saturated": most prompts start all-correct or
# all-wrong, the regime VAS is designed for (and a common one in RL sets); "balanced": a wide middle band.
SCENARIOS = {"saturated": (0.45, 0.1, 0.45), "balanced": (0.3, 0.4, 0.3)}


def run_scenario(args, name: str, mix: tuple[float, ...]) -> dict:
    """SFT warm start, offline pass rates, then every arm x seed; prints and returns the summary, writes plots."""
    out = args.out / name
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rng = random.Random(0)
    prompts = make_prompts(rng, args.prompts, mix)
    examples = sft_examples(rng, prompts, per_prompt=16)
    tokenizer = train_tokenizer([p + c for p, c in examples], vocab_size=320, vision=False)
    model_dir = build_tiny_text_lm(out / "sft-model", seed=0, config=TinyTextConfig(vocab_size=320), tokenizer=tokenizer)
    supervised_warmup(model_dir, examples, args.sft_steps)
    if args.scoring_samples:
        attach_offline_pass_rates(model_dir, prompts, args.scoring_samples, args.max_completion_length)
    print(f"[{name}] mix {mix}: SFT warm-up {args.sft_steps} steps on {len(examples)} worked answers, "
          f"{time.perf_counter() - started:.0f}s", flush=True)

    arms = {"uniform": 0.0, **{f"vas-{vas_lambda:g}": vas_lambda for vas_lambda in args.vas_lambdas}}
    runs: dict[str, list[ArmRun]] = {arm: [] for arm in arms}
    for seed in range(args.seeds):
        for arm, vas_lambda in arms.items():
            run = run_arm(args, out, arm, vas_lambda, seed, model_dir, prompts)
            runs[arm].append(run)
            print(f"[{name}] {arm:7s} seed {seed}: zero-variance groups {run.mean_zero_variance:.3f}, pass rate "
                  f"{run.pass_rate[0][1]:.3f} -> {run.pass_rate[-1][1]:.3f}, {run.train_seconds:.0f}s", flush=True)

    start = statistics.mean(run.pass_rate[0][1] for arm_runs in runs.values() for run in arm_runs)
    target = round(start + args.target_gain, 3)
    summary = summarise(runs, target, args.steps)
    print(f"\n[{name}] pass rate at step 0: {start:.3f}; target {target}; budget {args.steps} steps x "
          f"{args.prompts_per_step} prompts x {args.generations} rollouts; {args.seeds} seeds")
    print(f"{'arm':9s} {'zero-var groups':>16s} {'steps to target (per seed)':>28s} {'final pass':>11s} {'VAS share':>10s}")
    for arm, row in summary.items():
        steps = ",".join("-" if s is None else str(s) for s in row["steps_to_target"])
        print(f"{arm:9s} {row['zero_variance_fraction']:16.3f} {row['mean_steps_to_target']:12.1f} ({steps:>13s}) "
              f"{row['final_pass_rate']:11.3f} {row['vas_share_of_step_time']:10.4%}")
    print("pass rate by level, step 0 -> last (mean over seeds):")
    for arm, row in summary.items():
        print(f"{arm:9s} " + "  ".join(f"{level} {a:.2f}->{b:.2f}" for level, (a, b) in row["pass_rate_by_level"].items()))

    plot_curves({arm: mean_curve(r, "zero_variance") for arm, r in runs.items()}, f"{name}: zero-variance group fraction",
                out / "zero_variance.png")
    plot_curves({arm: mean_curve(r, "pass_rate") for arm, r in runs.items()}, f"{name}: sampled pass rate",
                out / "pass_rate.png")
    first_vas = runs[list(arms)[1]][0]
    if first_vas.vps_first_last:
        edges = vps_bin_edges(1.0)
        matrix = vps_transition_matrix(*first_vas.vps_first_last, edges)
        plot_transition_matrix(matrix, edges, f"{name}, VAS seed 0: VPS bins, first mostly-scored -> last step",
                               out / "vps_transitions.png")
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "mix": mix, "target": target, "summary": summary,
               "runs": {arm: [asdict(run) for run in arm_runs] for arm, arm_runs in runs.items()}}
    (out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", choices=sorted(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--mix", type=float, nargs=3, help="a custom share of each level instead of --scenarios")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--vas-lambdas", type=float, nargs="+", default=[0.5, 1.0], help="one VAS arm each")
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--max-completion-length", type=int, default=20)
    parser.add_argument("--lr", type=float, default=3e-4, help="1e-3 collapses the tiny policy")
    parser.add_argument("--sft-steps", type=int, default=600)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--scoring-samples", type=int, default=8,
                        help="rollouts per prompt for the RL set's offline pass_rate that seeds VAS; 0: VAS starts unscored")
    parser.add_argument("--eval-every", type=int, default=2)
    parser.add_argument("--eval-samples", type=int, default=8)
    parser.add_argument("--target-gain", type=float, default=0.1, help="target = step-0 pass rate + this")
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 1 is fastest for a 64-wide model")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_vas"))
    args = parser.parse_args(argv)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    scenarios = {"custom": tuple(args.mix)} if args.mix else {name: SCENARIOS[name] for name in args.scenarios}
    summaries = {name: run_scenario(args, name, mix) for name, mix in scenarios.items()}

    print("\nVAS against uniform (goals: >= 30% fewer zero-variance groups, <= 0.8x steps to target, overhead <= 1%;"
          "\n'-' = target not reached within the budget, counted as the budget: a lower bound on that run's steps)")
    for name, summary in summaries.items():
        uniform = summary["uniform"]
        for arm, vas in summary.items():
            if arm == "uniform":
                continue
            reduction = 1 - vas["zero_variance_fraction"] / uniform["zero_variance_fraction"]
            ratio = vas["mean_steps_to_target"] / uniform["mean_steps_to_target"]
            print(f"  {name:10s} {arm:8s}: zero-variance groups {reduction:6.1%} fewer ({uniform['zero_variance_fraction']:.3f} -> "
                  f"{vas['zero_variance_fraction']:.3f}); steps to target {ratio:.2f}x; overhead {vas['vas_share_of_step_time']:.3%}")
    print(f"plots and results.json under {args.out}/<scenario>; total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
