"""Every curate stage at scale: N problems from raw JSON lines (+ image files) to the published sets.

The corpus is built from the real shared problems like `bench_dedupe`'s (every TabMWP and GSM8K problem,
then numeric variants of them, with planted exact and near copies), written as a raw JSON-lines file that
the generic `jsonl` adapter reads; every fifth row carries an image file: a real TabMWP table or MathVision
diagram with the row's number in a metadata segment, so no two images hash alike. The teacher is a stub
backend that answers at once with chain-of-thought text of realistic length (log-normal around
`--cot-chars`), right with probability `--correct`, `--rollouts` samples per problem; its own time is
reported apart from the generate stage's. Stages run as the flow runs them on a Dask or Ray runner (one
task per shard on `--workers` worker processes, global steps in this process between them), without Prefect.

For each stage: wall time, rows/s, CPU seconds (this process and its children), peak RSS of this
process plus its children (sampled), bytes written; then the total. The published cold-start folder is
loaded with `datasets.load_dataset` (memory-mapped) and checked against its card.

    python benchmarks/bench_scale.py --problems 1600000 --rollouts 4
    python benchmarks/bench_scale.py --problems 200000 --keep /tmp/scale-200k   # corpus reused next time
"""

from __future__ import annotations

import argparse
import bisect
import functools
import itertools
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dedupe import DATA_ROOT, NEAR_COPY, ANSWER_TRAP, TreeRSS, load_bases, make_plan, near_copy, variant, changed_answer  # noqa: E402

from pipeline.config import RunConfig, load_config  # noqa: E402
from pipeline.decontam.stage import BenchmarkSnapshot, DecontamStage  # noqa: E402
from pipeline.dedupe.stage import DedupeIndex, DedupeStage  # noqa: E402
from pipeline.generate.base import GenerationBackend, GenerationRequest, GenerationResult, TeacherConfig  # noqa: E402
from pipeline.generate.rounds import RoundRules  # noqa: E402
from pipeline.generate.stage import GenerateStage  # noqa: E402
from pipeline.ingest.sources import SourceConfig  # noqa: E402
from pipeline.ingest.stage import IngestStage  # noqa: E402
from pipeline.io import StageDir  # noqa: E402
from pipeline.progress import QUIET_ENV, ShardProgress  # noqa: E402
from pipeline.publish import publish_dataset  # noqa: E402
from pipeline.publish.dataset import published_rows  # noqa: E402
from pipeline.score.difficulty import DifficultyStage  # noqa: E402
from pipeline.score.diversity import ClusterCentroids, DiversityStage  # noqa: E402
from pipeline.score.problem_type import ProblemTypeStage, TypeClassifier  # noqa: E402
from pipeline.select.plan import SelectionPlan  # noqa: E402
from pipeline.select.stage import ColdStartStage, RLStage  # noqa: E402
from pipeline.stage import Stage, run_shard, summarise_stage  # noqa: E402
from schemas import COLD_START_SCHEMA, RL_SCHEMA  # noqa: E402

IMAGE_EVERY = 5  # 20% of rows carry an image
REASONING = [
    "First, I list what the problem gives us.",
    "Let me write the quantities down carefully.",
    "Now I combine the two amounts.",
    "Checking the units: they agree.",
    "Wait, let me re-read the question to be sure.",
    "So the intermediate result is {n}.",
    "Subtracting the part already counted leaves {n}.",
    "Multiplying by the number of items gives {n}.",
    "Let me verify by working backwards from {n}.",
    "That matches the condition in the question.",
]


# ---------------------------------------------------------------- corpus


def image_pool(data_root: Path) -> list[Path]:
    """Real table images and diagrams, alternating, so both kinds reach every shard."""
    tables = sorted((data_root / "tabmwp" / "tables").glob("*.png"))
    diagrams = sorted((data_root / "mathvision" / "images").glob("*"))
    return [p for pair in zip(tables, diagrams) for p in pair] + tables[len(diagrams) :] + diagrams[len(tables) :]


def varied_image(data: bytes, position: int) -> bytes:
    """The real image with the row's number in a metadata segment: the same pixels, its own sha256.
    Drawing the number into the pixels and re-encoding cost 20 ms an image (1.8 hours for the 320k
    images of a 1.6M corpus) and bloated JPEG diagrams 2.5x as PNG; ingest and dedupe still decode
    every image in full."""
    tag = f"mmr-bench-row {position}".encode()
    if data.startswith(b"\x89PNG\r\n\x1a\n"):  # a tEXt chunk right after the 25-byte IHDR chunk
        body = b"tEXt" + b"Comment\x00" + tag
        chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
        return data[:33] + chunk + data[33:]
    if data.startswith(b"\xff\xd8"):  # a COM segment right after the JPEG start-of-image marker
        return data[:2] + b"\xff\xfe" + struct.pack(">H", len(tag) + 2) + tag + data[2:]
    raise ValueError("bench images are PNG or JPEG")


def write_corpus(raw_dir: Path, problems: int, seed: int, data_root: Path) -> dict:
    """`raw_dir/problems.jsonl` + `raw_dir/images/`; skipped when a finished corpus of this size is there."""
    done = raw_dir / "corpus.json"
    if done.exists() and json.loads(done.read_text())["problems"] == problems:
        return json.loads(done.read_text())
    started = time.perf_counter()
    shutil.rmtree(raw_dir, ignore_errors=True)
    (raw_dir / "images").mkdir(parents=True)
    bases = load_bases(data_root)
    plan = make_plan(bases, problems, seed)
    pool = [path.read_bytes() for path in image_pool(data_root)]
    images = 0
    with open(raw_dir / "problems.jsonl", "w", encoding="utf-8") as out:
        for position in range(problems):
            base = bases[plan.base[position]]
            question, answer = variant(base, int(plan.variant[position]))
            kind = plan.kind[position]
            if kind in (NEAR_COPY, ANSWER_TRAP):
                question = near_copy(question, np.random.default_rng([position, 7]))
            if kind == ANSWER_TRAP:
                answer = changed_answer(base, answer)
            row = {"id": position, "question": question, "answer": answer, "choices": list(base.choices) if base.choices else None, "solution": base.solution}
            if position % IMAGE_EVERY == 0:
                image = pool[zlib.crc32(question.encode()) % len(pool)]
                suffix = "png" if image.startswith(b"\x89PNG") else "jpg"
                name = f"images/{position:08d}.{suffix}"
                (raw_dir / name).write_bytes(varied_image(image, position))
                row["images"] = [name]
                images += 1
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    summary = {"problems": problems, "images": images, "seconds": time.perf_counter() - started, "bytes": tree_bytes(raw_dir)}
    done.write_text(json.dumps(summary))
    return summary


# ---------------------------------------------------------------- stub teacher


TEACHER_LIFT = 0.5  # with a difficulty spread: the stub teacher solves half of what the stub policy misses


class StubTeacher(GenerationBackend):
    """Answers at once: a think block of log-normal length around `cot_chars`, then the boxed answer,
    right with probability `correct`. Everything is drawn from the request id, so reruns match.
    The think block is a run of whole reasoning steps cut from one long text written at start (a few
    microseconds a request, so the stub's time stays small beside the stages it feeds).
    Gold answers come from `answers`, filled per shard by `StubGenerateStage`; one teacher per worker
    process (the stage's shared resource), its CPU time counted per thread."""

    MAX_LENGTH_FACTOR = 16  # longest think block, in medians (the log-normal's sigma 0.5 is 4 sigma below it)

    def __init__(
        self, teachers: Sequence[TeacherConfig], policy: Sequence[TeacherConfig], cot_chars: int, correct: float,
        spread: tuple[float, float] | None = None,
    ):  # fmt: skip
        super().__init__(teachers, policy)
        self.cot_chars, self.correct, self.spread = cot_chars, correct, spread
        self.answers: dict[str, str] = {}
        self.holders: Counter[str] = Counter()  # shards in flight that hold each answer
        self.lock = threading.Lock()
        self.clock = threading.local()  # seconds this thread spent answering
        rng = random.Random(0)
        steps = [REASONING[rng.randrange(len(REASONING))].format(n=rng.randrange(2, 999)) for _ in range(64 * self.MAX_LENGTH_FACTOR * cot_chars // 30)]
        self.text = " ".join(steps) + " "
        self.step_starts = list(itertools.accumulate((len(step) + 1 for step in steps), initial=0))  # + the end
        self.last_start = bisect.bisect_left(self.step_starts, len(self.text) - self.MAX_LENGTH_FACTOR * cot_chars)

    def answer(self, request: GenerationRequest) -> GenerationResult:
        rng = random.Random(int(request.request_id[:15], 16))
        target = min(int(rng.lognormvariate(math.log(self.cot_chars), 0.5)), self.MAX_LENGTH_FACTOR * self.cot_chars)
        start = self.step_starts[rng.randrange(self.last_start)]
        end = self.step_starts[bisect.bisect_left(self.step_starts, start + target)] - 1  # whole steps
        gold = self.answers[request.problem_id]
        answer = gold if rng.random() < self.chance(request) else wrong(gold)
        text = "<think>\n" + self.text[start:end] + f"\n</think>\nThe answer is $\\boxed{{{answer}}}$."
        return GenerationResult(request.request_id, text, "stop", 200, len(text) // 4)

    def chance(self, request: GenerationRequest) -> float:
        """The chance of a right answer: `correct` everywhere, or with `spread` = (a, b) the policy's own per-problem
        accuracy drawn from Beta(a, b), and a teacher that also solves TEACHER_LIFT of what the policy misses."""
        if self.spread is None:
            return self.correct
        policy = random.Random(f"{request.problem_id}:accuracy").betavariate(*self.spread)
        return policy if request.role == "rollout" else policy + (1 - policy) * TEACHER_LIFT

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        started = time.thread_time()
        results = [self.answer(r) for r in requests]
        self.clock.seconds = getattr(self.clock, "seconds", 0.0) + time.thread_time() - started
        return results


def wrong(gold: str) -> str:
    try:
        return str(float(gold.replace(",", "")) + 1)
    except ValueError:
        return f"not {gold}"


TEACHER_SECONDS = "stub_teacher_ms"  # in the generate shards' stats, taken out of the stage's summary


class StubGenerateStage(GenerateStage):
    """The generate stage, handing the stub its shard's gold answers (the bench's truth, never the stage's)
    and counting the stub's time in the shard's stats."""

    def process(self, shard, inputs):
        teacher = self.backend
        answers = dict(zip(inputs["problems"].column("problem_id").to_pylist(), inputs["problems"].column("answer").to_pylist()))
        with teacher.lock:  # exact copies share a problem id across shards that run at once
            teacher.answers.update(answers)
            teacher.holders.update(answers.keys())
        before = getattr(teacher.clock, "seconds", 0.0)
        try:
            result = super().process(shard, inputs)
        finally:
            with teacher.lock:
                teacher.holders.subtract(answers.keys())
                for key in answers:
                    if teacher.holders[key] == 0:
                        del teacher.answers[key], teacher.holders[key]
        result.stats[TEACHER_SECONDS] = int(1000 * (teacher.clock.seconds - before))
        return result


# ---------------------------------------------------------------- measuring


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) if Path(path).exists() else 0


def cpu_seconds() -> float:
    """CPU time of this process and its live children, plus the children that already exited."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:4])
    for child in me.children(recursive=True):
        try:
            times = child.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


class Meter:
    def __init__(self, run_dir: Path, progress: bool, workers: int):
        self.run_dir, self.progress, self.workers, self.rows = run_dir, progress, workers, []

    @contextmanager
    def stage(self, name: str, written: Sequence[str], rows: Callable[[], int]):
        """Measures the block; a block that ran the stub teacher sets `teacher["seconds"]` (CPU seconds
        over all workers, which answered in parallel: the wall time it took is that over the workers)."""
        memory = TreeRSS(interval_s=0.25)
        memory.start()
        before_bytes = sum(tree_bytes(self.run_dir / w) for w in written)
        before_cpu = cpu_seconds()
        started = time.perf_counter()
        teacher = {"seconds": 0.0}
        yield teacher
        teacher_s = teacher["seconds"]
        wall = time.perf_counter() - started - teacher_s / self.workers
        count = rows()
        self.rows.append(
            {
                "stage": name,
                "wall_s": wall,
                "stub_teacher_s": teacher_s,
                "rows": count,
                "rows_per_s": count / max(wall, 1e-9),
                "cpu_s": cpu_seconds() - before_cpu - teacher_s,
                "peak_rss_bytes": memory.stop(),
                "bytes_written": sum(tree_bytes(self.run_dir / w) for w in written) - before_bytes,
            }
        )
        if self.progress:
            print(format_row(self.rows[-1]), flush=True)


def run_shards(stage: Stage, run_dir: Path, shards: list[str], pool: Executor) -> dict:
    progress = ShardProgress(stage.name, len(shards))
    for marker in pool.map(run_shard, itertools.repeat(stage), itertools.repeat(run_dir), shards):
        progress.shard_done(marker.rows)
    progress.close()
    return summarise_stage(run_dir, stage.name, shards)


def format_row(row: dict) -> str:
    return (
        f"{row['stage']:<12} {row['wall_s']:>9.1f} {row['rows']:>10,} {row['rows_per_s']:>10,.0f} {row['cpu_s']:>8.1f} "
        f"{row['peak_rss_bytes'] / 2**30:>8.2f} {row['bytes_written'] / 2**20:>10,.0f} {row['stub_teacher_s']:>9.1f}"
    )


HEADER = f"{'stage':<12} {'wall s':>9} {'rows':>10} {'rows/s':>10} {'CPU s':>8} {'RSS GiB':>8} {'MiB out':>10} {'teacher s':>9}"


# ---------------------------------------------------------------- the run


def run(args: argparse.Namespace, work: Path) -> dict:
    raw = (args.keep or work) / "raw"
    corpus = write_corpus(raw, args.problems, args.seed, args.data_root)
    run_name = f"scale-{args.problems}"
    runs_root = work / "runs"
    shutil.rmtree(runs_root / run_name, ignore_errors=True)
    source = {"name": "bench", "format": "jsonl", "path": str(raw / "problems.jsonl"), "domain": "bench", "image_root": str(raw),
              "columns": {"source_id": "id", "question": "question", "answer": "answer", "choices": "choices", "solution": "solution", "images": "images"}}  # fmt: skip
    config: RunConfig = load_config(None, [f"runs_root={runs_root}", f"run_name={run_name}", f"data_root={args.data_root}", f"ingest.shard_size={args.shard_size}", f"dedupe.workers={args.workers}", "train.mode=none", f"diversity.embedder={args.embedder}"])
    config = config.model_copy(update={"sources": [SourceConfig.model_validate(source)]})
    run_dir = config.run_dir
    meter = Meter(run_dir, progress=not args.quiet, workers=args.workers if args.processes else 1)  # threads share one GIL
    # Shard tasks run in worker processes, as on a Dask or Ray runner (Python stages hold the GIL, so
    # threads would use one core).
    workers = ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) if args.processes else ThreadPoolExecutor(args.workers)
    if not args.quiet:
        print(f"corpus: {corpus['problems']:,} problems, {corpus['images']:,} images, {corpus['bytes'] / 2**30:.2f} GiB raw")
        print(HEADER)

    def rows_of(stage: str) -> Callable[[], int]:
        return lambda: StageDir(run_dir, stage).total_rows()

    ingest = IngestStage(config.ingest, config.sources, config.data_root)
    shards = ingest.shards()
    with meter.stage("ingest", ["problems", "quarantine"], rows_of("problems")):
        lineage = [run_shards(ingest, run_dir, shards, workers)]
    with meter.stage("dedupe", ["dedupe", "dedupe_index"], rows_of("dedupe")):
        index = DedupeIndex(config.dedupe).prepare(run_dir, shards)
        lineage.append(run_shards(DedupeStage(config.dedupe, index), run_dir, shards, workers))
    with meter.stage("decontam", ["decontam", "decontam_index"], rows_of("decontam")):
        index = BenchmarkSnapshot(config.decontam, config.data_root).prepare(run_dir, shards)
        lineage.append(run_shards(DecontamStage(config.decontam, index), run_dir, shards, workers))
    judgements = ["dedupe", "decontam"]
    # k samples each from a stub teacher (CoTs) and a stub policy (rollouts: the pass rate)
    pools = [[TeacherConfig(name=name, model=name, n_samples=args.rollouts)] for name in ("stub", "stub-policy")]
    teacher = functools.partial(StubTeacher, *pools, args.cot_chars, args.correct)
    rules = RoundRules(config.generate.sampling, config.select, config.score.truncated_rollouts, config.seed)
    generate = StubGenerateStage(
        config.generate, teacher, {"stub": [args.cot_chars, args.correct, args.rollouts]}, run_dir,
        verify=config.verify, rules=rules, annotation_stages=judgements,
    )  # fmt: skip
    with meter.stage("generate", ["generations"], rows_of("generations")) as stub:  # verified in rounds
        lineage.append(run_shards(generate, run_dir, shards, workers))
        stub["seconds"] = lineage[-1]["counts"].pop(TEACHER_SECONDS, 0) / 1000

    def select(which: str, annotations: list[str], stage_lineage: list[dict]) -> tuple[dict, Stage]:
        plan = SelectionPlan(config.select, which, annotations, config.seed).prepare(run_dir, shards)
        stage = {"cold_start": ColdStartStage, "rl": RLStage}[which](plan)
        summary = run_shards(stage, run_dir, shards, workers)
        plan_summary = stage.manifest
        summary |= {"dropped": plan_summary["drops"], "composition": plan_summary["composition"]}
        summary["counts"] |= {"selected": plan_summary["selected"], "target": plan_summary["target"]}
        return summary, stage

    # As in the curate flow: both sets need the pass rates and the problem types.
    with meter.stage("difficulty", ["difficulty"], rows_of("difficulty")):
        lineage.append(run_shards(DifficultyStage(config.score), run_dir, shards, workers))
    with meter.stage("diversity", ["diversity", "diversity_index"], rows_of("diversity")):
        index = ClusterCentroids(config.diversity).prepare(run_dir, shards)
        lineage.append(run_shards(DiversityStage(config.diversity, index), run_dir, shards, workers))
    with meter.stage("problem_type", ["problem_type", "problem_type_index"], rows_of("problem_type")):
        index = TypeClassifier(config.problem_type).prepare(run_dir, shards)
        lineage.append(run_shards(ProblemTypeStage(config.problem_type, index), run_dir, shards, workers))
    scores = ["problem_type"]
    licenses = {source.name: source.license for source in config.sources}
    datasets_dir = run_dir / "datasets"
    with meter.stage("select_cold", ["cold_start", "select_plan_index"], rows_of("cold_start")):
        cold_summary, _ = select("cold_start", judgements + scores, lineage)
    with meter.stage("publish_cold", ["datasets"], rows_of("cold_start")):
        cold_folder = publish_dataset(run_dir, "cold_start", COLD_START_SCHEMA, config.publish, lineage + [cold_summary], shards, licenses)
    with meter.stage("select_rl", ["rl", "select_plan_index"], rows_of("rl")):
        rl_summary, _ = select("rl", judgements + scores + ["diversity"], lineage)
    with meter.stage("publish_rl", ["datasets"], rows_of("rl")):
        publish_dataset(run_dir, "rl", RL_SCHEMA, config.publish, lineage + [rl_summary], shards, licenses)

    workers.shutdown()
    total = {
        "stage": "total",
        **{key: sum(r[key] for r in meter.rows) for key in ("wall_s", "stub_teacher_s", "cpu_s", "bytes_written")},
        "rows": args.problems,
        "peak_rss_bytes": max(r["peak_rss_bytes"] for r in meter.rows),
    }
    total["rows_per_s"] = args.problems / total["wall_s"]
    check = check_published(cold_folder, work)
    return {"args": {k: str(v) for k, v in vars(args).items()}, "corpus": corpus, "stages": meter.rows, "total": total, "cold_start": check, "datasets_bytes": tree_bytes(datasets_dir)}


def check_published(folder: Path, work: Path) -> dict:
    """Memory-mapped load of the published set; its card's per-source counts must add up to it."""
    import datasets

    cache = work / "hf-cache"
    shutil.rmtree(cache, ignore_errors=True)  # a kept work folder's cache holds the last run's set
    loaded = datasets.load_dataset(str(folder), split="train", cache_dir=str(cache))
    card = (folder / "README.md").read_text()
    table = card.split("| source | rows |")[1].split("\n\n")[0]
    card_rows = sum(int(n) for n in re.findall(r"^\| \S+ \| (\d+) \|$", table, re.M))
    return {"rows": len(loaded), "card_rows": card_rows, "parquet_rows": published_rows(folder), "matches": len(loaded) == card_rows == published_rows(folder)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", type=int, default=1_600_000)
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--correct", type=float, default=0.6, help="the stub teacher's rate of right answers")
    parser.add_argument("--cot-chars", type=int, default=2000, help="median chain-of-thought length")
    parser.add_argument("--shard-size", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", dest="processes", action="store_false", help="shard tasks on threads of this process, not worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument("--keep", type=Path, default=None, help="keep the corpus and run here (the corpus is reused)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--quiet", action="store_true", help="only the final table")
    parser.add_argument("--embedder", choices=["minilm", "static"], default="minilm", help="diversity.embedder (see bench_embed.py)")
    args = parser.parse_args(argv)
    if args.quiet:
        os.environ[QUIET_ENV] = "1"
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        result = run(args, work)
    print(HEADER)
    for row in result["stages"] + [result["total"]]:
        print(format_row(row))
    check = result["cold_start"]
    print(f"cold-start set: {check['rows']:,} rows loaded (memory-mapped), card {check['card_rows']:,}: {'match' if check['matches'] else 'MISMATCH'}")
    print(f"peak RSS {result['total']['peak_rss_bytes'] / 2**30:.2f} GiB; wall without the stub teacher {result['total']['wall_s'] / 60:.1f} min; "
          f"largest stage {max(r['wall_s'] for r in result['stages']) / result['total']['wall_s']:.0%} of it; load average {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
