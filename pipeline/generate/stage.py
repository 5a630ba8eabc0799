"""Generate: a problems shard (+ its judgements) -> one verified Generation row per sample asked, in rounds.

Within a shard, generation proceeds in rounds (pipeline/generate/rounds.py): each round's requests are sent, their
replies verified at once (verdict and quality columns on the same rows), and a per-problem rule decides the next
round: policy rollouts until selection's decisions on them are settled, then teachers only for problems selection
can keep, until enough verified chains of thought. Fixed sampling asks everything in one round.

The backend streams results as they finish (a server backend keeps every request of a round in flight, bounded
per endpoint; batch engines answer `batch_size` at a time). They are appended to a per-shard journal (one JSON
line each, flushed and fsynced every `batch_size` results), so a killed run loses at most one unflushed chunk; a
rerun replays the rounds from the journal (the same replies give the same decisions) and sends only what is not
journaled yet. The shard is written once no problem wants more, and the journal is then compacted into one zstd
Parquet file (kept: a rerun after an upstream change reuses every CoT it holds), since JSON lines of long CoTs are
the largest thing a run writes (3.6 GB for bench_scale's 1.5M at 200k problems).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pyarrow as pa
from pydantic import Field

from pipeline.config_base import StrictConfig, runtime
from pipeline.generate.base import GenerationBackend, GenerationRequest, GenerationResult
from pipeline.generate.journal import JOURNAL_DIR, append_journal, compact_journal, drop_torn_tail, read_journal
from pipeline.generate.rounds import ProblemRounds, RoundRules, SamplingConfig
from pipeline.io import stable_hash
from pipeline.judgements import keep_mask
from pipeline.select.plan import SelectConfig
from pipeline.stage import ShardResult, Stage, build_logged
from pipeline.verify.judge import RowJudge, VerifyStageConfig, verifier_resources
from schemas import GENERATION_SCHEMA

TOKEN_KINDS = ("prompt", "completion", "reasoning")  # the token counts a server reports, summed per role


class GenerateConfig(StrictConfig):
    batch_size: int = runtime(256)  # journal flush unit; also the requests a batch engine gets at once
    flush_every_s: float = runtime(30.0)  # flush sooner when results come slowly (long CoT): bounds what a kill loses
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)


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


class GenerateStage(Stage[GenerateConfig]):
    name = "generations"
    inputs: tuple[str, ...] = ("problems",)  # and the annotation stages, set per instance
    output_schema = GENERATION_SCHEMA

    def __init__(
        self,
        config: GenerateConfig,
        backend_factory: Callable[[], GenerationBackend],
        backend_identity: object,
        run_dir: Path,
        *,
        verify: VerifyStageConfig = VerifyStageConfig(),
        rules: RoundRules = RoundRules(SamplingConfig(), SelectConfig()),
        annotation_stages: Sequence[str] = (),
    ):
        super().__init__(config)
        self.annotation_stages = tuple(annotation_stages)  # duplicates and contaminated problems get no requests
        self.inputs = ("problems", *self.annotation_stages)
        self.backend_identity = backend_identity  # what the backend's output depends on (models, recordings)
        self.run_dir = Path(run_dir)
        self.backend_factory = backend_factory
        self.verify, self.rules = verify, rules

    def setup(self) -> dict[str, object]:
        # one engine or client and one verifier pool per worker process
        return {"backend": build_logged(self.backend_factory), **verifier_resources(self.verify)}

    @property
    def backend(self) -> GenerationBackend:
        return self.resources["backend"]

    def fingerprint(self) -> str:
        return stable_hash([super().fingerprint(), self.backend_identity, self.verify.identity(), self.rules.identity()])

    def journal_path(self, shard: str) -> Path:
        return self.run_dir / self.name / JOURNAL_DIR / f"{shard}.jsonl"

    def process(self, shard: str, inputs: Mapping[str, pa.Table]) -> ShardResult:
        problems = inputs["problems"]
        keep, dropped = keep_mask(problems.column("problem_id"), [inputs[n] for n in self.annotation_stages])
        stats = Counter({f"skipped_{k.removeprefix('dropped_')}": v for k, v in dropped.items()})
        candidates: list[GenerationRequest] = []  # every sample fixed sampling would ask, in the rows' order
        rounds: dict[str, ProblemRounds] = {}
        for problem, wanted in zip(problems.to_pylist(), keep):
            if wanted and problem["problem_id"] not in rounds:
                requests = self.backend.requests_for(problem)
                candidates += requests
                rounds[problem["problem_id"]] = ProblemRounds(self._in_sampling_order(requests, "rollout"), self._in_sampling_order(requests, "teacher"))
        journal = self.journal_path(shard)
        drop_torn_tail(journal)
        journaled = read_journal(journal)
        judge = RowJudge(problems, self.resources["verifier"], self.verify)
        rows: dict[str, dict] = {}
        while wanted := [request for state in rounds.values() for request in state.next_requests(self.rules)]:
            stats["shard_rounds"] += 1
            results = self._fetch(wanted, journal, journaled, stats)
            judged = [generation_row(request, results[request.request_id]) for request in wanted]
            judge.judge(judged, stats)
            for row in judged:
                rows[row["request_id"]] = row
                rounds[row["problem_id"]].record(row, self.rules)
        if journal.exists():  # new results were appended since the last compaction (results no longer asked for stay)
            compact_journal(journal, journaled)
        out = [rows[request.request_id] for request in candidates if request.request_id in rows]
        stats.update(self._cost(candidates, out, rounds.values()))
        return ShardResult(pa.Table.from_pylist(out, schema=GENERATION_SCHEMA), [], stats)

    def _in_sampling_order(self, requests: list[GenerationRequest], role: str) -> list[GenerationRequest]:
        return self.backend.sampling_order([r for r in requests if r.role == role], self.rules.seed)

    def _fetch(self, requests: list[GenerationRequest], journal: Path, journaled: dict[str, GenerationResult], stats: Counter) -> dict:
        """One result per request: from the journal where a previous run got it, else from the backend, journaled as
        they come (`journaled` gains them)."""
        done = {r.request_id: journaled[r.request_id] for r in requests if r.request_id in journaled}
        stats["requests_cached"] += len(done)
        missing = [r for r in requests if r.request_id not in done]
        asked = {r.request_id for r in missing}
        unflushed: list[GenerationResult] = []
        flushed_at = time.monotonic()
        try:
            for result in self.backend.stream(missing, self.config.batch_size):
                if result.request_id not in asked or result.request_id in done:
                    raise RuntimeError(f"{type(self.backend).__name__} returned an unasked or repeated result {result.request_id}")
                done[result.request_id] = journaled[result.request_id] = result
                unflushed.append(result)
                if len(unflushed) >= self.config.batch_size or time.monotonic() - flushed_at >= self.config.flush_every_s:
                    append_journal(journal, unflushed)
                    unflushed, flushed_at = [], time.monotonic()
        finally:  # an outage (EndpointsDown) or a bug still keeps what came back
            append_journal(journal, unflushed)
        stats["requests_sent"] += len(missing)
        if len(done) != len(requests):
            raise RuntimeError(f"{type(self.backend).__name__} left {len(requests) - len(done)} requests without a result")
        return done

    def _cost(self, candidates: list[GenerationRequest], rows: list[dict], rounds) -> Counter[str]:
        """Requests fixed sampling would ask against those asked, tokens by role, and why rounds stopped early."""
        cost: Counter[str] = Counter(failed=sum(row["error"] is not None for row in rows))
        for request in candidates:
            cost[f"requests_fixed_{request.role}"] += 1
        for row in rows:
            cost[f"requests_made_{row['role']}"] += 1
            for kind in TOKEN_KINDS:
                cost[f"tokens_{kind}_{row['role']}"] += row[f"{kind}_tokens"] or 0
        for state in rounds:
            cost["rollouts_stopped_early"] += state.rollouts_sent < len(state.rollouts)
            if (verdict := state.teacher_verdict(self.rules)) is not None and state.teachers and self.rules.adaptive:
                cost[f"skipped_teachers_{verdict}"] += 1
        return cost
