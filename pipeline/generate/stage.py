"""Generate: a problems shard -> one Generation row per (problem, model, role, sample).

The backend streams results as they finish (a server backend keeps every request of the shard in
flight, bounded per endpoint; batch engines answer `batch_size` at a time). They are appended to a
per-shard journal (one JSON line each, flushed and fsynced every `batch_size` results), so a killed
run loses at most one unflushed chunk and a rerun sends only the requests whose ids are not journaled
yet. The shard is written from the journal once every request has a result, and the journal is then
compacted into one zstd Parquet file (kept: a rerun after an upstream change reuses every CoT it holds),
since JSON lines of long CoTs are the largest thing a run writes (3.6 GB for bench_scale's 1.5M at 200k problems).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config_base import StrictConfig, runtime
from pipeline.generate.base import GenerationBackend, GenerationRequest, GenerationResult
from pipeline.io import stable_hash, write_parquet_atomic
from pipeline.judgements import keep_mask
from pipeline.stage import ShardResult, Stage, build_logged
from schemas import GENERATION_SCHEMA

JOURNAL_DIR = "_journal"


class GenerateConfig(StrictConfig):
    batch_size: int = runtime(256)  # journal flush unit; also the requests a batch engine gets at once
    flush_every_s: float = runtime(30.0)  # flush sooner when results come slowly (long CoT): bounds what a kill loses


JOURNAL_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("text", pa.string()),
        ("reasoning", pa.string()),
        ("finish_reason", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("reasoning_tokens", pa.int64()),
        ("error", pa.string()),
    ]
)


def compacted_journal(path: Path) -> Path:
    return path.with_suffix(".parquet")


def read_journal(path: Path) -> dict[str, GenerationResult]:
    """Finished results by request id: the compacted journal's, then the JSON lines appended since; a torn
    last line (killed mid-write) is ignored."""
    results: dict[str, GenerationResult] = {}
    if compacted_journal(path).exists():
        results = {row["request_id"]: GenerationResult(**row) for row in pq.read_table(compacted_journal(path)).to_pylist()}
    if not path.exists():
        return results
    for line in path.read_bytes().splitlines():
        try:
            result = GenerationResult(**json.loads(line))
        except (ValueError, TypeError):
            continue
        results[result.request_id] = result
    return results


def compact_journal(path: Path, results: Mapping[str, GenerationResult]) -> None:
    """Every result of the journal in one compressed Parquet file, written (atomically) before the JSON
    lines are removed: a kill in between leaves both, which `read_journal` merges."""
    rows = [vars(results[request_id]) for request_id in sorted(results)]
    write_parquet_atomic(compacted_journal(path), pa.Table.from_pylist(rows, schema=JOURNAL_SCHEMA))
    path.unlink(missing_ok=True)


def drop_torn_tail(path: Path) -> None:
    """Cut a last line that a kill left without its newline, so appends start on a fresh line."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def append_journal(path: Path, results: list[GenerationResult]) -> None:
    if not results:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as handle:
        for result in results:
            # vars, not asdict: the same flat dict without asdict's recursive copy (35 us a result)
            handle.write(json.dumps(vars(result), ensure_ascii=False).encode("utf-8") + b"\n")
        handle.flush()
        os.fsync(handle.fileno())


def generation_row(request: GenerationRequest, result: GenerationResult) -> dict:
    return {
        "request_id": request.request_id,
        "problem_id": request.problem_id,
        "teacher": request.teacher,
        "role": request.role,
        "sample_index": request.sample_index,
        "prompt": json.dumps(request.messages, ensure_ascii=False),
        "raw_text": result.text,
        "reasoning": result.reasoning,
        "finish_reason": result.finish_reason,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "reasoning_tokens": result.reasoning_tokens,
        "error": result.error,
        "extracted_answer": None,
        "correct": None,
        "verdict_reason": None,
        "quality_ok": None,
        "quality_reason": None,
    }


class GenerateStage(Stage):
    name = "generations"
    inputs = ("problems",)
    output_schema = GENERATION_SCHEMA

    def __init__(
        self,
        config: GenerateConfig,
        backend_factory: Callable[[], GenerationBackend],
        backend_identity: object,
        run_dir: Path,
        annotation_stages: Sequence[str] = (),
    ):
        super().__init__(config)
        self.annotation_stages = tuple(annotation_stages)  # duplicates and contaminated problems get no requests
        self.inputs = ("problems", *self.annotation_stages)
        self.backend_identity = backend_identity  # what the backend's output depends on (models, recordings)
        self.run_dir = Path(run_dir)
        self.backend_factory = backend_factory

    def setup(self) -> dict[str, GenerationBackend]:
        return {"backend": build_logged(self.backend_factory)}  # one engine or client per worker process

    @property
    def backend(self) -> GenerationBackend:
        return self.resources["backend"]

    def fingerprint(self) -> str:
        return stable_hash([super().fingerprint(), self.backend_identity])

    def journal_path(self, shard: str) -> Path:
        return self.run_dir / self.name / JOURNAL_DIR / f"{shard}.jsonl"

    def process(self, shard: str, inputs: Mapping[str, pa.Table]) -> ShardResult:
        problems = inputs["problems"]
        keep, stats = keep_mask(problems.column("problem_id"), [inputs[n] for n in self.annotation_stages])
        stats = Counter({f"skipped_{k.removeprefix('dropped_')}": v for k, v in stats.items()})
        requests: dict[str, GenerationRequest] = {}
        for problem, wanted in zip(problems.to_pylist(), keep):
            if not wanted:
                continue
            for request in self.backend.requests_for(problem):
                requests.setdefault(request.request_id, request)
        journal = self.journal_path(shard)
        drop_torn_tail(journal)
        journaled = read_journal(journal)
        done = {rid: result for rid, result in journaled.items() if rid in requests}
        stats["requests_cached"] = len(done)
        missing = [r for rid, r in requests.items() if rid not in done]
        unflushed: list[GenerationResult] = []
        flushed_at = time.monotonic()
        try:
            for result in self.backend.stream(missing, self.config.batch_size):
                if result.request_id not in requests or result.request_id in done:
                    raise RuntimeError(f"{type(self.backend).__name__} returned an unasked or repeated result {result.request_id}")
                done[result.request_id] = result
                unflushed.append(result)
                if len(unflushed) >= self.config.batch_size or time.monotonic() - flushed_at >= self.config.flush_every_s:
                    append_journal(journal, unflushed)
                    unflushed, flushed_at = [], time.monotonic()
        finally:  # an outage (EndpointsDown) or a bug still keeps what came back
            append_journal(journal, unflushed)
        stats["requests_sent"] = len(missing)
        if len(done) != len(requests):
            raise RuntimeError(f"{type(self.backend).__name__} left {len(requests) - len(done)} requests without a result")
        if journal.exists():  # new results were appended since the last compaction (results no longer asked for stay)
            compact_journal(journal, journaled | done)
        rows = [generation_row(request, done[rid]) for rid, request in requests.items()]
        stats["failed"] = sum(1 for row in rows if row["error"] is not None)
        return ShardResult(pa.Table.from_pylist(rows, schema=GENERATION_SCHEMA), [], stats)
