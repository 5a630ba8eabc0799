"""Evaluate: benchmark problems -> n responses per model through a generation backend -> verifier verdicts.

One shard is a slice of one benchmark (`<benchmark>-00000`), answered by every configured model; rows are judged
samples (EVALUATION_SCHEMA). The backend is any of pipeline/generate (a vLLM server, vLLM in process,
transformers, or recorded responses); each model to compare (base, SFT, GRPO + VAS checkpoints) is a teacher of
it. A text-only model is asked without the images (counted as `images_dropped`), never given pixels it cannot
read. A benchmark row that cannot be evaluated as published is quarantined with its reason (every model alike) and
counted in the reports. Markers make finished shards free on a rerun; the report is rebuilt from the shards.
"""

from __future__ import annotations

import functools
import json
import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
from pydantic import Field

from pipeline.config_base import StrictConfig, runtime
from pipeline.evaluate.benchmarks import DEFAULT_BENCHMARKS, BenchmarkConfig, judge_labels, open_benchmark
from pipeline.evaluate.report import columns_by_model, model_report, write_reports, write_summary
from pipeline.generate.base import SamplingParams, TeacherConfig, build_request
from pipeline.generate.factory import BackendConfig, backend_identity, make_backend
from pipeline.io import StageDir, stable_hash
from pipeline.stage import ShardResult, Stage, build_logged, run_shard
from pipeline.verify import Verifier, VerifierConfig, VerifyItem
from schemas import EVALUATION_SCHEMA

STAGE_NAME = "evaluations"


class EvalModel(StrictConfig):
    name: str  # label in the report: "base", "sft", "grpo-vas", ...
    path: str  # model folder (transformers / in-process vLLM), or the name a server serves it under
    vision: bool | None = None  # None: read from the folder's config.json (a `vision_config` makes it VL)

    def is_vision(self) -> bool:
        if self.vision is not None:
            return self.vision
        config = Path(self.path) / "config.json"
        if not config.exists():
            raise ValueError(f"model {self.name}: say `vision` explicitly, {config} does not exist")
        return "vision_config" in json.loads(config.read_text(encoding="utf-8"))

    def weights_identity(self) -> list | None:
        return weights_identity(self.path)


def weights_identity(model: str | Path | None) -> list | None:
    """What a retrained checkpoint at the same path looks like (its weight files by name, size and mtime; hashing
    gigabytes of weights would cost more than it saves), so what was computed from it is redone; a name that is no
    folder (a served model) stands for itself."""
    if model is None:
        return None
    folder = Path(model)
    if not folder.is_dir():
        return [str(model)]
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(folder.glob("*.safetensors"))]


class EvaluateConfig(StrictConfig):
    benchmarks: list[BenchmarkConfig] = Field(default_factory=lambda: list(DEFAULT_BENCHMARKS))
    problems_per_benchmark: int | None = None  # the first N problems of every benchmark (over each one's own limit)
    models: list[EvalModel] = Field(default_factory=list)  # ignored by the recorded backend (its recordings are the models)
    backend: BackendConfig = BackendConfig(kind="transformers")
    samples: int = 1  # responses per problem and model
    sampling: SamplingParams = SamplingParams(temperature=0.0, max_tokens=1024, seed=0)
    shard_size: int = 100
    chunk_size: int = runtime(64)  # requests per backend call (batch engines)
    confidence: float = 0.95
    bootstrap_resamples: int = 2000
    verifier_workers: int = runtime(2)

    def teachers(self) -> list[TeacherConfig]:
        return [TeacherConfig(name=m.name, model=m.path, n_samples=self.samples, sampling=self.sampling) for m in self.models]


def blind(problem: Mapping) -> dict:
    return {**problem, "images": []}


class EvaluateStage(Stage[EvaluateConfig]):
    name = STAGE_NAME
    output_schema = EVALUATION_SCHEMA

    def __init__(self, config: EvaluateConfig, data_root: Path):
        super().__init__(config)
        self.data_root = Path(data_root)
        self.benchmarks = {b.name: open_benchmark(self._capped(b), self.data_root) for b in config.benchmarks}
        backend = config.backend.model_copy(update={"teachers": config.teachers()})
        self.recorded = backend.kind == "recorded"
        self.text_only = set() if self.recorded else {m.name for m in config.models if not m.is_vision()}
        self.backend_identity = backend_identity(backend)
        self.backend_config = backend

    def setup(self) -> dict[str, object]:
        return {
            "backend": build_logged(functools.partial(make_backend, self.backend_config, self.data_root)),
            "verifier": build_logged(functools.partial(Verifier, VerifierConfig(workers=self.config.verifier_workers))),
        }

    def _capped(self, benchmark: BenchmarkConfig) -> BenchmarkConfig:
        limits = [n for n in (benchmark.limit, self.config.problems_per_benchmark) if n is not None]
        return benchmark.model_copy(update={"limit": min(limits)}) if limits else benchmark

    def fingerprint(self) -> str:
        benchmarks = {name: b.identity() for name, b in sorted(self.benchmarks.items())}
        knobs = {"samples": self.config.samples, "sampling": self.config.sampling.model_dump(mode="json")}
        weights = {} if self.recorded else {m.name: m.weights_identity() for m in self.config.models}
        return stable_hash([self.name, benchmarks, self.backend_identity, weights, knobs, self.config.shard_size])

    def shards(self, benchmark: str | None = None) -> list[str]:
        names = [benchmark] if benchmark else list(self.benchmarks)
        return [f"{n}-{i:05d}" for n in names for i in range(math.ceil(self.benchmarks[n].count() / self.config.shard_size))]

    def _requests(self, backend, problem: dict) -> list:
        if self.recorded:  # one "model" per recording; a response recorded in both roles is scored once, as a rollout
            return [request for request in backend.requests_for(problem) if request.role == "rollout"]
        return [
            build_request(blind(problem) if teacher.name in self.text_only else problem, teacher, index)
            for teacher in backend.teachers
            for index in range(teacher.n_samples)
        ]

    def process(self, shard: str, inputs: Mapping[str, pa.Table]) -> ShardResult:
        name, index = shard.rsplit("-", 1)
        start = int(index) * self.config.shard_size
        read, skipped = self.benchmarks[name].read(start, start + self.config.shard_size, not self.recorded)
        problems = {p["problem_id"]: p for p in read}
        backend = self.resources["backend"]
        requests = [request for problem in problems.values() for request in self._requests(backend, problem)]
        results = {r.request_id: r for r in backend.stream(requests, self.config.chunk_size)}
        answered = [q for q in requests if results[q.request_id].error is None]
        items = [_item(results[q.request_id].text, problems[q.problem_id]) for q in answered]
        verdicts = dict(zip((q.request_id for q in answered), self.resources["verifier"].judge_many(items)))
        rows, stats = [], Counter(problems=len(problems), samples=len(requests))
        for request in requests:
            problem, result, verdict = problems[request.problem_id], results[request.request_id], verdicts.get(request.request_id)
            correct, reason = _decision(verdict, problem)
            stats["correct" if correct else "failed" if verdict is None else "wrong"] += 1
            rows.append(
                {
                    "benchmark": name,
                    "model": request.teacher,
                    "problem_id": problem["source_id"],
                    "subject": problem["subject"],
                    "level": problem["level"],
                    "sample_index": request.sample_index,
                    "answer": problem["answer"],
                    "response": result.text,
                    "extracted": verdict.extracted if verdict else None,
                    "extraction_method": verdict.method if verdict else None,
                    "correct": correct,
                    "reason": reason,
                    "error": result.error,
                    "images_dropped": request.teacher in self.text_only and bool(problem["images"]),
                }
            )
        table = pa.Table.from_pylist(rows, schema=EVALUATION_SCHEMA)
        return ShardResult(table, quarantined=skipped, stats=stats)


def _item(text: str, problem: Mapping) -> VerifyItem:
    return VerifyItem(
        text=text or "",
        gold=problem["answer"],
        answer_type=problem["answer_type"],
        question_type=problem["question_type"],
        choices=problem["choices"],
    )


def _decision(verdict, problem: Mapping) -> tuple[bool, str]:
    """(correct, reason) of one sample: option labels are judged as a set, everything else by the verifier."""
    if verdict is None:
        return False, "generation_failed"
    if problem["answer_labels"] is not None:
        return judge_labels(verdict.extracted, problem["answer_labels"])
    return verdict.correct, verdict.reason


def skipped_rows(stage_dir: StageDir, shards: list[str]) -> Counter:
    """The benchmark rows left out of a benchmark's shards, by reason (from the shard markers)."""
    skipped: Counter[str] = Counter()
    for shard in shards:
        stats = stage_dir.finished(shard).stats
        skipped.update({key.removeprefix("quarantined_"): n for key, n in stats.items() if key.startswith("quarantined_")})
    return skipped


def build_reports(stage: EvaluateStage, run_dir: Path, out_dir: Path) -> dict[str, dict]:
    """One report folder per benchmark (report.json, accuracy.png, comparison.md) from the finished shards, and
    `comparison.md` over all of them: one row per benchmark and checkpoint."""
    config: EvaluateConfig = stage.config
    stage_dir, documents, metas = StageDir(run_dir, STAGE_NAME), {}, {}
    columns = ["model", "problem_id", "subject", "level", "correct", "error", "images_dropped"]
    for name, benchmark in stage.benchmarks.items():
        shards = stage.shards(name)
        rows = [row for shard in shards for row in stage_dir.read(shard, columns=columns).to_pylist()]
        by_model = columns_by_model(rows)
        reports = {
            model: model_report(values, config.confidence, config.bootstrap_resamples, seed=config.sampling.seed or 0)
            for model, values in by_model.items()
        }
        skipped = skipped_rows(stage_dir, shards)
        metas[name] = {
            "samples_per_problem": config.samples,
            "confidence": config.confidence,
            "resamples": config.bootstrap_resamples,
            "rows_in_file": benchmark.rows_in_file,
            "rows_read": benchmark.count(),
            "rows_skipped": dict(sorted(skipped.items())),
        }
        write_reports(out_dir / name, name, reports, metas[name])
        documents[name] = reports
    write_summary(out_dir, documents, metas)
    return documents


def run_evaluation(config: EvaluateConfig, run_dir: Path, data_root: Path, out_dir: Path | None = None) -> dict[str, dict]:
    """Every shard (finished ones are skipped by their markers), then the reports. Flows fan shards out instead."""
    stage = EvaluateStage(config, data_root)
    try:
        for shard in stage.shards():
            run_shard(stage, run_dir, shard)
    finally:
        stage.release()
    return build_reports(stage, run_dir, out_dir or Path(run_dir) / "reports")
