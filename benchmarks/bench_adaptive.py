"""Fixed against adaptive sampling, side by side in one run: requests and tokens, time, and what selection decides.

Two corpora, each generated once with `generate.sampling.mode: fixed` (every rollout, every teacher sample) and
with `adaptive` (pipeline/generate/rounds.py), through the real generate stage (rounds, journal, verification) and
the difficulty stage:
- the shared MATH-V recordings: 3,040 problems, nine real model settings each as rollouts (k = 9), its three CoT
  settings as teachers; the recorded backend replays them in a seeded order, so each `--orders` seed is another
  random order in which sampling could have met the same replies;
- the bench_scale stub corpus, whose stub policy has a per-problem accuracy drawn from Beta(a, b) (`--spread`) and
  whose stub teacher also solves half of what the policy misses (stated in the output), `--rollouts` rollouts and
  `--teacher-samples` teacher samples a problem (its replies are drawn from the request ids, so one order).
Reported per adaptive run against its fixed run: policy rollouts and teacher requests made (and the ratio), tokens
made per role (prompt + completion + reasoning; the recordings count completion words, the stub ~4 chars a token),
the generate stage's wall time, agreement of the RL-set eligibility and of the cold-start difficulty band, the
cold-start coverage (problems the fixed run's selection keeps that get as many verified CoTs, up to
`target_verified`), and the pass rate's difference from the fixed-k estimate (it rests on fewer rollouts).

    python benchmarks/bench_adaptive.py                       # both corpora, 5 orders, a 20,000-problem stub corpus
    python benchmarks/bench_adaptive.py --stub-problems 2000 --orders 2 --json /tmp/adaptive.json
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scale import TEACHER_LIFT, StubGenerateStage, StubTeacher, write_corpus  # noqa: E402

from pipeline.config import load_config  # noqa: E402
from pipeline.generate.base import TeacherConfig  # noqa: E402
from pipeline.generate.factory import backend_identity, make_backend  # noqa: E402
from pipeline.generate.rounds import RoundRules, SamplingConfig  # noqa: E402
from pipeline.generate.stage import TOKEN_KINDS, GenerateStage  # noqa: E402
from pipeline.ingest.sources import SourceConfig  # noqa: E402
from pipeline.ingest.stage import IngestConfig, IngestStage  # noqa: E402
from pipeline.io import StageDir  # noqa: E402
from pipeline.paths import default_data_root  # noqa: E402
from pipeline.score.difficulty import DifficultyStage  # noqa: E402
from pipeline.select.plan import rollout_decisions  # noqa: E402
from pipeline.stage import run_shard  # noqa: E402

CONFIG = load_config(None, ["train.mode=none"])


def ingest(run_dir: Path, sources: list[SourceConfig], data_root: Path, shard_size: int) -> list[str]:
    stage = IngestStage(IngestConfig(shard_size=shard_size), sources, data_root)
    shards = stage.shards()
    for shard in shards:
        run_shard(stage, run_dir, shard)
    return shards


def generate(base: Path, run_dir: Path, shards: list[str], make_stage: Callable[[RoundRules, Path], GenerateStage], rules: RoundRules) -> dict:
    """One sampling mode over the ingested problems (shared with the other runs): its rows, scores, stats and time."""
    run_dir.mkdir(parents=True)
    (run_dir / "problems").symlink_to(base / "problems")
    stage = make_stage(rules, run_dir)
    started = time.perf_counter()
    stats: Counter[str] = Counter()
    for shard in shards:
        stats.update(run_shard(stage, run_dir, shard).stats)
    wall = time.perf_counter() - started
    stage.release()
    difficulty, verified = {}, Counter()
    for shard in shards:
        run_shard(DifficultyStage(CONFIG.score), run_dir, shard)
        # by shard and problem: an exact copy in another shard (the stub corpus plants them) is another row
        difficulty |= {(shard, d["problem_id"]): (d["num_correct"], d["num_rollouts"]) for d in StageDir(run_dir, "difficulty").read(shard).to_pylist()}
        rows = StageDir(run_dir, "generations").read(shard, columns=["problem_id", "role", "correct", "quality_ok"]).to_pylist()
        verified.update((shard, r["problem_id"]) for r in rows if r["role"] == "teacher" and r["correct"] and r["quality_ok"])
    return {"stats": stats, "wall_s": wall, "difficulty": difficulty, "verified": verified}


def compare(fixed: dict, adaptive: dict, target: int) -> dict:
    decide = functools.partial(rollout_decisions, config=CONFIG.select)
    problems = list(fixed["difficulty"])
    full = {p: decide(*fixed["difficulty"][p]) for p in problems}
    got = {p: decide(*adaptive["difficulty"][p]) for p in problems}
    kept = [p for p in problems if full[p][0] is None and fixed["verified"][p] > 0]
    covered = [p for p in kept if adaptive["verified"][p] == min(fixed["verified"][p], target)]
    scored = [p for p in problems if fixed["difficulty"][p][1] and adaptive["difficulty"][p][1]]
    error = np.array([abs(adaptive["difficulty"][p][0] / adaptive["difficulty"][p][1] - fixed["difficulty"][p][0] / fixed["difficulty"][p][1]) for p in scored])
    shrunk = [p for p in scored if adaptive["difficulty"][p][1] < fixed["difficulty"][p][1]]
    made = {mode: run["stats"] for mode, run in (("fixed", fixed), ("adaptive", adaptive))}
    tokens = {mode: {role: sum(stats[f"tokens_{kind}_{role}"] for kind in TOKEN_KINDS) for role in ("rollout", "teacher")} for mode, stats in made.items()}
    return {
        "problems": len(problems),
        "rollouts": {mode: stats["requests_made_rollout"] for mode, stats in made.items()},
        "teacher_requests": {mode: stats["requests_made_teacher"] for mode, stats in made.items()},
        "tokens": tokens,
        "wall_s": {"fixed": fixed["wall_s"], "adaptive": adaptive["wall_s"]},
        "rl_agreement": sum(full[p][1] == got[p][1] for p in problems) / len(problems),
        "band_agreement": sum(full[p][0] == got[p][0] for p in problems) / len(problems),
        "cold_start_kept": len(kept),
        "cold_start_covered": len(covered),
        "cold_start_cots": {"fixed": sum(min(fixed["verified"][p], target) for p in kept), "adaptive": sum(adaptive["verified"][p] for p in kept)},
        "pass_rate_error": {"mean": float(error.mean()) if len(error) else 0.0, "max": float(error.max()) if len(error) else 0.0,
                            "problems_on_fewer_rollouts": len(shrunk)},  # fmt: skip
    }


def side_by_side(name: str, base: Path, shards: list[str], make_stage, orders: int, work: Path) -> dict:
    target = SamplingConfig().target_verified or CONFIG.select.cold_start_max_per_problem
    fixed = generate(base, work / f"{name}-fixed", shards, make_stage, RoundRules(SamplingConfig(mode="fixed"), CONFIG.select))
    runs = []
    for seed in range(orders):
        rules = RoundRules(SamplingConfig(), CONFIG.select, CONFIG.score.truncated_rollouts, seed=seed)
        runs.append(compare(fixed, generate(base, work / f"{name}-adaptive-{seed}", shards, make_stage, rules), target))
    return {"orders": runs, "target_verified": target}


def mathvision(args: argparse.Namespace, work: Path) -> dict:
    source = SourceConfig(name="mathvision", format="mathvision", path="mathvision/test.jsonl", domain="visual_math", limit=args.mathvision_problems)
    base = work / "mathvision"
    shards = ingest(base, [source], args.data_root, 500)
    backend = CONFIG.backend.model_copy(update={"recordings": [r for r in CONFIG.backend.recordings if r.source == "mathvision"]})

    def make_stage(rules: RoundRules, run_dir: Path) -> GenerateStage:
        factory = functools.partial(make_backend, backend, args.data_root)
        return GenerateStage(CONFIG.generate, factory, backend_identity(backend), run_dir, verify=CONFIG.verify, rules=rules)

    return side_by_side("mathvision", base, shards, make_stage, args.orders, work)


def stub(args: argparse.Namespace, work: Path) -> dict:
    raw = work / "stub-raw"
    write_corpus(raw, args.stub_problems, 0, args.data_root)
    columns = {"source_id": "id", "question": "question", "answer": "answer", "choices": "choices", "solution": "solution", "images": "images"}
    source = SourceConfig.model_validate({"name": "bench", "format": "jsonl", "path": str(raw / "problems.jsonl"), "domain": "bench", "image_root": str(raw), "columns": columns})
    base = work / "stub"
    shards = ingest(base, [source], args.data_root, 5000)
    teachers = [TeacherConfig(name="stub", model="stub", n_samples=args.teacher_samples)]
    policy = [TeacherConfig(name="stub-policy", model="stub-policy", n_samples=args.rollouts)]
    factory = functools.partial(StubTeacher, teachers, policy, args.cot_chars, 0.0, tuple(args.spread))

    def make_stage(rules: RoundRules, run_dir: Path) -> GenerateStage:
        identity = {"stub": [args.cot_chars, args.spread, args.rollouts, args.teacher_samples]}
        return StubGenerateStage(CONFIG.generate, factory, identity, run_dir, verify=CONFIG.verify, rules=rules)

    return side_by_side("stub", base, shards, make_stage, 1, work)  # the stub draws from request ids: one order only


def summary_line(name: str, runs: list[dict]) -> str:
    ratio = lambda key: np.mean([r[key]["adaptive"] / r[key]["fixed"] for r in runs])  # noqa: E731
    tokens = np.mean([sum(r["tokens"]["adaptive"].values()) / max(sum(r["tokens"]["fixed"].values()), 1) for r in runs])
    return (
        f"{name}: rollouts {ratio('rollouts'):.2f}x ({1 - ratio('rollouts'):.0%} fewer), teacher requests {ratio('teacher_requests'):.2f}x "
        f"({1 - ratio('teacher_requests'):.0%} fewer), tokens {tokens:.2f}x, generate wall {ratio('wall_s'):.2f}x; "
        f"RL eligibility agreement {min(r['rl_agreement'] for r in runs):.4f}, band agreement {min(r['band_agreement'] for r in runs):.4f}, "
        f"cold-start coverage {min(r['cold_start_covered'] / max(r['cold_start_kept'], 1) for r in runs):.4f} "
        f"({runs[0]['cold_start_kept']:,} problems kept), pass-rate |error| mean {np.mean([r['pass_rate_error']['mean'] for r in runs]):.3f} "
        f"max {max(r['pass_rate_error']['max'] for r in runs):.3f} (averaged over {len(runs)} orders)"
    )


def print_runs(name: str, runs: list[dict]) -> None:
    print(f"\n{name}: fixed vs adaptive, per order")
    print(f"{'order':>5} {'rollouts':>17} {'teacher req':>17} {'tokens (M)':>15} {'wall s':>13} {'RL agree':>8} {'band':>6} {'covered':>13} {'|dp| mean':>9}")
    for seed, r in enumerate(runs):
        tokens = {mode: sum(r["tokens"][mode].values()) / 1e6 for mode in ("fixed", "adaptive")}
        print(
            f"{seed:>5} {r['rollouts']['fixed']:>8,} {r['rollouts']['adaptive']:>8,} {r['teacher_requests']['fixed']:>8,} {r['teacher_requests']['adaptive']:>8,} "
            f"{tokens['fixed']:>7.2f} {tokens['adaptive']:>7.2f} {r['wall_s']['fixed']:>6.1f} {r['wall_s']['adaptive']:>6.1f} "
            f"{r['rl_agreement']:>8.4f} {r['band_agreement']:>6.4f} {r['cold_start_covered']:>6,}/{r['cold_start_kept']:<6,} {r['pass_rate_error']['mean']:>9.3f}"
        )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=5, help="adaptive runs on the recordings, each with another replay order (seed)")
    parser.add_argument("--mathvision-problems", type=int, default=None, help="the first N MATH-V problems (default: all 3,040)")
    parser.add_argument("--stub-problems", type=int, default=20_000)
    parser.add_argument("--spread", type=float, nargs=2, default=[1.0, 1.0], metavar=("A", "B"),
                        help="the stub policy's per-problem accuracy ~ Beta(A, B)")  # fmt: skip
    parser.add_argument("--rollouts", type=int, default=16, help="k: the stub policy's rollouts a problem (16: DAPO's group size)")
    parser.add_argument("--teacher-samples", type=int, default=4, help="the stub teacher's samples a problem")
    parser.add_argument("--cot-chars", type=int, default=2000)
    parser.add_argument("--data-root", type=Path, default=default_data_root())
    parser.add_argument("--skip", choices=["mathvision", "stub"], default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result: dict = {"select": {k: v for k, v in CONFIG.select.identity().items() if k.startswith(("cold_start_m", "rl_m"))}}
    with tempfile.TemporaryDirectory(prefix="bench-adaptive-") as scratch:
        work = Path(scratch)
        if args.skip != "mathvision":
            result["mathvision"] = mathvision(args, work)
            print_runs("MATH-V recordings (k = 9 real model settings; 3 CoT settings as teachers)", result["mathvision"]["orders"])
        if args.skip != "stub":
            result["stub"] = stub(args, work) | {"spread": args.spread, "teacher_lift": TEACHER_LIFT}
            print_runs(f"stub corpus ({args.stub_problems:,} problems, k = {args.rollouts}, {args.teacher_samples} teacher samples; policy accuracy "
                       f"~ Beta({args.spread[0]}, {args.spread[1]}) per problem, teacher = policy + {TEACHER_LIFT} x the rest)", result["stub"]["orders"])  # fmt: skip
    print()
    for name in ("mathvision", "stub"):
        if name in result:
            print(summary_line(name, result[name]["orders"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=int))
    return result


if __name__ == "__main__":
    main()
