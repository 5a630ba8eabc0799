"""VAS against its peers for GRPO, at equal rollout cost, on a task a tiny model learns on CPU in minutes.

    python benchmarks/bench_vas.py [--scenarios saturated balanced] [--seeds 5] [--steps 60] [--arms ...]

Task: integer additions of three difficulty levels (one-digit pairs, two-digit pairs, three terms), answered as
"<think>a+b=c</think> \\boxed{c}". A tiny Qwen2 model gets a brief SFT on generated worked answers whose
correctness depends on the level (mostly right, a coin flip, mostly off by one or two), so the policy starts
with the spread of per-prompt pass rates RL sees in practice: easy prompts give all-correct groups, hard ones
all-wrong groups, neither teaches GRPO anything. Each prompt gets an offline pass rate from k = 8 rollouts of the
warm-started policy, as the curate flow writes `pass_rate` into the RL set; the VAS arms seed their tables from it
(the others ignore it). Then GRPO (TRL, the project's verifier rewards) runs every arm of ARMS on the same seeds,
model and prompts, in two task mixes (SCENARIOS), each until it has generated the same number of rollouts
(`--steps` uniform batches' worth): DAPO spends more rollouts per optimiser step, so steps are not the cost.
Reported per arm, mean ± std over seeds: the fraction of zero-variance accuracy groups among all groups rolled
out (dynamic sampling's dropped ones included), the rollouts and the training wall time (probes excluded) until
the sampled pass rate on the training prompts first reaches the target, the final pass rate on held-out prompts
of the same mix, and the method's share of training wall time (its own code: table updates, draws, skip tests,
DAPO's selection and merge; DAPO's extra rollouts are counted as rollouts, not as overhead).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from pipeline.models.tiny import TinyTextConfig, build_tiny_text_lm, train_tokenizer  # noqa: E402
from pipeline.train.config import TrainConfig, VASConfig  # noqa: E402
from pipeline.train.peers import DynamicSamplingConfig, GRESOConfig  # noqa: E402
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
    """Sampled pass rate on the training prompts at the start and every `every` rollouts generated, against the
    rollouts and the training wall time so far (the probe's own time excluded); stops the run at `budget` rollouts."""

    def __init__(self, trainer, rows: list[dict], every: int, budget: int, samples: int, max_new_tokens: int):
        self.trainer, self.rows, self.every, self.budget = trainer, rows, every, budget
        self.samples, self.max_new_tokens = samples, max_new_tokens
        self.reward = AccuracyReward()
        self.curve: list[tuple[int, float, float]] = []  # (rollouts, wall seconds, pass rate)
        self.by_level: dict[str, list[tuple[int, float]]] = {level: [] for level in LEVELS}
        self.probe_seconds = 0.0
        self._started = 0.0
        self._next = 0

    def wall(self) -> float:
        return time.perf_counter() - self._started - self.probe_seconds

    def _measure(self, model, rollouts: int) -> None:
        wall, started = self.wall(), time.perf_counter()
        rates = sampled_pass_rates(model, self.trainer.processing_class, self.rows, self.reward, self.samples, self.max_new_tokens)
        self.curve.append((rollouts, wall, statistics.mean(rates)))
        for level in LEVELS:
            self.by_level[level].append((rollouts, statistics.mean(r for r, row in zip(rates, self.rows) if row["level"] == level)))
        self._next = (rollouts // self.every + 1) * self.every
        self.probe_seconds += time.perf_counter() - started

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._started = time.perf_counter()
        self._measure(model, 0)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        rollouts = self.trainer.vas_history.rollouts_generated
        if rollouts >= self._next or rollouts >= self.budget:
            self._measure(model, rollouts)
        if rollouts >= self.budget:
            control.should_training_stop = True


@dataclass
class ArmRun:
    arm: str
    seed: int
    zero_variance_groups: int = 0
    groups: int = 0
    pass_rate: list[tuple[int, float, float]] = field(default_factory=list)  # (rollouts, wall s, pass rate)
    pass_rate_by_level: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    heldout_pass_rate: float = 0.0
    steps: int = 0
    train_seconds: float = 0.0  # training wall time, the probe's excluded
    method_seconds: float = 0.0
    vps_first_last: tuple[list[float | None], list[float | None]] | None = None

    @property
    def zero_variance_fraction(self) -> float:
        """Over every group rolled out (dynamic sampling's dropped ones too: they are what it pays for)."""
        return self.zero_variance_groups / self.groups

    def first_reaching(self, target: float) -> tuple[int, float] | None:
        return next(((rollouts, wall) for rollouts, wall, rate in self.pass_rate if rate >= target), None)


# The arms: TRL trainer options. Uniform is TRL's own sampler (lambda = 0); DAPO and GRESO (pipeline/train/peers.py)
# run on it; "vas-paper-*" are the paper's VPS ("vas-paper-1" is the default VASConfig()); "vas-posterior" the variant.
ARMS = {
    "uniform": dict(vas=VASConfig(vas_lambda=0.0)),
    "dapo": dict(vas=VASConfig(vas_lambda=0.0), dynamic_sampling=DynamicSamplingConfig()),
    "greso": dict(vas=VASConfig(vas_lambda=0.0), dynamic_sampling=DynamicSamplingConfig(), pre_rollout_skip=GRESOConfig()),
    "vas-paper-0.5": dict(vas=VASConfig.paper(0.5)),
    "vas-paper-1": dict(vas=VASConfig.paper(1.0)),
    "vas-posterior": dict(vas=VASConfig(scorer="posterior")),
}


def run_arm(args, out: Path, arm: str, seed: int, model_dir: Path, prompts: list[dict], heldout: list[dict]) -> ArmRun:
    output_dir = out / f"{arm}-seed{seed}"
    options = dict(ARMS[arm])
    options["vas"] = replace(options["vas"], seed_from_pass_rate=args.scoring_samples > 0)
    batch_rollouts = args.prompts_per_step * args.generations
    budget = args.steps * batch_rollouts
    config = TrainConfig(
        rl_dataset_dir=output_dir, output_dir=output_dir, model_path=model_dir, seed=seed,
        max_steps=args.steps * (DynamicSamplingConfig().max_rounds if "dynamic_sampling" in options else 1),
        num_generations=args.generations, prompts_per_step=args.prompts_per_step,
        max_completion_length=args.max_completion_length, learning_rate=args.lr, lr_scheduler_type="constant",
        **options,
    )
    trainer = build_trainer(config, datasets.Dataset.from_list(prompts), model_dir)
    trainer.remove_callback(PrinterCallback)  # one summary line per run instead of a log dict per step
    probe = PassRateProbe(trainer, prompts, args.eval_every * batch_rollouts, budget, args.eval_samples, args.max_completion_length)
    trainer.add_callback(probe)
    trainer.train()
    train_seconds = probe.wall()
    trainer.close_rewards()
    heldout_rates = sampled_pass_rates(trainer.model, trainer.processing_class, heldout, probe.reward, args.eval_samples,
                                       args.max_completion_length)
    probe.reward.close()
    snapshots = trainer.vas_history.vps_snapshots
    history = trainer.vas_history
    return ArmRun(
        arm=arm, seed=seed, zero_variance_groups=history.zero_variance_groups, groups=history.groups_generated,
        pass_rate=probe.curve, pass_rate_by_level=probe.by_level, heldout_pass_rate=statistics.mean(heldout_rates),
        steps=trainer.state.global_step, train_seconds=train_seconds, method_seconds=trainer.method_seconds(),
        vps_first_last=(first_mostly_scored(snapshots)[1], snapshots[-1][1]) if snapshots else None,
    )


def mean_curve(runs: list[ArmRun], grid: np.ndarray) -> list[tuple[float, float]]:
    """Mean over seeds of each run's pass rate, interpolated at the same rollout counts."""
    curves = [np.interp(grid, [r for r, _, _ in run.pass_rate], [p for _, _, p in run.pass_rate]) for run in runs]
    return list(zip(grid.tolist(), np.mean(curves, axis=0).tolist()))


def spread(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summarise(runs: dict[str, list[ArmRun]], target: float, budget: int) -> dict:
    summary = {}
    for arm, arm_runs in runs.items():
        reached = [run.first_reaching(target) for run in arm_runs]
        summary[arm] = {
            "zero_variance_fraction": spread([run.zero_variance_fraction for run in arm_runs]),
            # A run that never reaches the target counts as the whole budget (a lower bound on its real cost).
            "rollouts_to_target": spread([budget if r is None else r[0] for r in reached]),
            "seconds_to_target": spread([run.train_seconds if r is None else r[1] for r, run in zip(reached, arm_runs)]),
            "not_reached": sum(r is None for r in reached),
            "final_pass_rate": spread([run.pass_rate[-1][2] for run in arm_runs]),
            "heldout_pass_rate": spread([run.heldout_pass_rate for run in arm_runs]),
            "pass_rate_by_level": {
                level: [statistics.mean(run.pass_rate_by_level[level][i][1] for run in arm_runs) for i in (0, -1)]
                for level in LEVELS
            },
            "method_share_of_step_time": spread([run.method_seconds / run.train_seconds for run in arm_runs]),
            "steps": spread([run.steps for run in arm_runs]),
            "seconds_per_run": statistics.mean(run.train_seconds for run in arm_runs),
        }
    return summary


def _cell(stat: dict, fmt: str) -> str:
    return f"{stat['mean']:{fmt}} ± {stat['std']:{fmt}}"


# Task mixes (share of one-digit, two-digit, three-term prompts). "saturated": most prompts start all-correct or
# all-wrong, the regime VAS is designed for (and a common one in RL sets); "balanced": a wide middle band.
SCENARIOS = {"saturated": (0.45, 0.1, 0.45), "balanced": (0.3, 0.4, 0.3)}


@dataclass
class Scenario:
    name: str
    mix: tuple[float, ...]
    out: Path
    model_dir: Path
    prompts: list[dict]
    heldout: list[dict]
    runs: dict[str, list[ArmRun]] = field(default_factory=dict)


def prepare_scenario(args, name: str, mix: tuple[float, ...]) -> Scenario:
    """The mix's prompts (training and held-out), the SFT warm start and the offline pass rates."""
    out = args.out / name
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rng = random.Random(0)
    prompts = make_prompts(rng, args.prompts, mix)
    heldout = [dict(row, problem_id=f"heldout-{row['problem_id']}") for row in make_prompts(random.Random(1), args.prompts, mix)]
    examples = sft_examples(rng, prompts, per_prompt=16)
    tokenizer = train_tokenizer([p + c for p, c in examples], vocab_size=320, vision=False)
    model_dir, recipe = out / "sft-model", json.dumps({"mix": mix, "prompts": args.prompts, "sft_steps": args.sft_steps})
    marker = model_dir / "warmed_up.json"  # the warm start is deterministic: a rerun with the same recipe reuses it
    if not (marker.exists() and marker.read_text(encoding="utf-8") == recipe):
        build_tiny_text_lm(model_dir, seed=0, config=TinyTextConfig(vocab_size=320), tokenizer=tokenizer)
        supervised_warmup(model_dir, examples, args.sft_steps)
        marker.write_text(recipe, encoding="utf-8")
    if args.scoring_samples:
        attach_offline_pass_rates(model_dir, prompts, args.scoring_samples, args.max_completion_length)
    print(f"[{name}] mix {mix}: SFT warm-up {args.sft_steps} steps on {len(examples)} worked answers, "
          f"{time.perf_counter() - started:.0f}s", flush=True)
    return Scenario(name, mix, out, model_dir, prompts, heldout, {arm: [] for arm in args.arms})


def run_seed(args, scenario: Scenario, seed: int) -> None:
    for arm in args.arms:
        run = run_arm(args, scenario.out, arm, seed, scenario.model_dir, scenario.prompts, scenario.heldout)
        scenario.runs[arm].append(run)
        print(f"[{scenario.name}] {arm:13s} seed {seed}: zero-variance groups {run.zero_variance_fraction:.3f}, pass rate "
              f"{run.pass_rate[0][2]:.3f} -> {run.pass_rate[-1][2]:.3f} (held-out {run.heldout_pass_rate:.3f}), "
              f"{run.steps} steps, {run.train_seconds:.0f}s", flush=True)


def report_scenario(args, scenario: Scenario) -> dict:
    """Prints the table over the seeds run so far, writes results.json and the plots; returns the summary."""
    runs, name, out = scenario.runs, scenario.name, scenario.out
    seeds = len(next(iter(runs.values())))
    start = statistics.mean(run.pass_rate[0][2] for arm_runs in runs.values() for run in arm_runs)
    target = round(start + args.target_gain, 3)
    budget = args.steps * args.prompts_per_step * args.generations
    summary = summarise(runs, target, budget)
    print(f"\n[{name}] pass rate at the start: {start:.3f}; target {target}; budget {budget} rollouts per run "
          f"({args.prompts_per_step} prompts x {args.generations} rollouts a batch); {seeds} seeds; mean ± std")
    print(f"{'arm':13s} {'zero-var groups':>15s} {'rollouts to target':>20s} {'s to target':>13s} {'missed':>6s} "
          f"{'held-out pass':>15s} {'method share':>16s} {'steps':>5s}")
    for arm, row in summary.items():
        print(f"{arm:13s} {_cell(row['zero_variance_fraction'], '.3f'):>15s} {_cell(row['rollouts_to_target'], '.0f'):>20s} "
              f"{_cell(row['seconds_to_target'], '.1f'):>13s} {row['not_reached']:6d} {_cell(row['heldout_pass_rate'], '.3f'):>15s} "
              f"{_cell(row['method_share_of_step_time'], '.2%'):>16s} {row['steps']['mean']:5.1f}")
    print("pass rate by level, start -> end (mean over seeds):")
    for arm, row in summary.items():
        print(f"{arm:13s} " + "  ".join(f"{level} {a:.2f}->{b:.2f}" for level, (a, b) in row["pass_rate_by_level"].items()))

    grid = np.arange(0, budget + 1, args.eval_every * args.prompts_per_step * args.generations)
    plot_curves({arm: mean_curve(r, grid) for arm, r in runs.items()}, f"{name}: sampled pass rate", out / "pass_rate.png",
                xlabel="rollouts generated")
    vas_arms = [arm for arm in args.arms if runs[arm][0].vps_first_last and arm.startswith("vas")]
    if vas_arms:
        edges = vps_bin_edges(1.0)
        matrix = vps_transition_matrix(*runs[vas_arms[0]][0].vps_first_last, edges)
        plot_transition_matrix(matrix, edges, f"{name}, {vas_arms[0]} seed 0: score bins, first mostly-scored -> last step",
                               out / "vps_transitions.png")
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "mix": scenario.mix, "target": target, "budget": budget,
               "summary": summary, "runs": {arm: [asdict(run) for run in arm_runs] for arm, arm_runs in runs.items()}}
    (out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    return summary


def run_mix(args, name: str, mix: tuple[float, ...]) -> dict:
    """One mix, seed by seed, with the table so far after each seed (a run cut short still reports)."""
    sys.stdout.reconfigure(line_buffering=True)  # lines of parallel mixes interleave whole
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    scenario = prepare_scenario(args, name, mix)
    for seed in range(args.seeds):
        run_seed(args, scenario, seed)
        print(f"\n[{name}] === {'final' if seed == args.seeds - 1 else 'so far'}: {seed + 1} of {args.seeds} seeds ===")
        summary = report_scenario(args, scenario)
    return summary


GOALS = "goals: >= 30% fewer zero-variance groups than uniform, <= 0.8x its rollouts to target, <= DAPO's, overhead <= 1%"


def goal_report(summary: dict) -> list[str]:
    uniform, dapo = summary.get("uniform"), summary.get("dapo")
    lines = []
    for arm, row in summary.items():
        if not arm.startswith("vas") or uniform is None:
            continue
        reduction = 1 - row["zero_variance_fraction"]["mean"] / uniform["zero_variance_fraction"]["mean"]
        ratio = row["rollouts_to_target"]["mean"] / uniform["rollouts_to_target"]["mean"]
        versus_dapo = row["rollouts_to_target"]["mean"] / dapo["rollouts_to_target"]["mean"] if dapo else math.nan
        overhead = row["method_share_of_step_time"]["mean"]
        met = reduction >= 0.3 and ratio <= 0.8 and versus_dapo <= 1.0 and overhead <= 0.01
        lines.append(f"{arm:13s}: zero-variance groups {reduction:6.1%} fewer; rollouts to target {ratio:.2f}x uniform, "
                     f"{versus_dapo:.2f}x DAPO; overhead {overhead:.2%} -> {'all goals met' if met else 'NOT all met'}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", choices=sorted(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--mix", type=float, nargs=3, help="a custom share of each level instead of --scenarios")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60, help="rollout budget per run, in uniform batches")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--max-completion-length", type=int, default=20)
    parser.add_argument("--lr", type=float, default=3e-4, help="1e-3 collapses the tiny policy")
    parser.add_argument("--sft-steps", type=int, default=600)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--scoring-samples", type=int, default=8,
                        help="rollouts per prompt for the RL set's offline pass_rate that seeds VAS; 0: VAS starts unscored")
    parser.add_argument("--eval-every", type=int, default=2, help="probe every this many batches' worth of rollouts")
    parser.add_argument("--eval-samples", type=int, default=4, help="samples per prompt in each probe")
    parser.add_argument("--target-gain", type=float, default=0.1, help="target = step-0 pass rate + this")
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 1 is fastest for a 64-wide model")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_vas"))
    parser.add_argument("--workers", type=int, help="mixes run in parallel processes (default: one per mix, up to the cores)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    mixes = {"custom": tuple(args.mix)} if args.mix else {name: SCENARIOS[name] for name in args.scenarios}
    workers = min(args.workers or os.cpu_count() or 1, len(mixes))
    if workers > 1:  # one process per mix (each single-threaded): the arms within a mix still share one process
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            summaries = dict(zip(mixes, pool.map(run_mix, [args] * len(mixes), mixes, mixes.values())))
    else:
        summaries = {name: run_mix(args, name, mix) for name, mix in mixes.items()}

    print(f"\nVAS arms against uniform and DAPO ({GOALS}; a run that never reaches the target counts as the budget)")
    for name, summary in summaries.items():
        for line in goal_report(summary):
            print(f"  {name:10s} {line}")
    print(f"plots and results.json under {args.out}/<scenario>; total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
