"""The recorded backend replays the real shared outputs; the journal makes the stage resumable."""

from __future__ import annotations

import functools
import json

from pipeline.generate.base import GenerationBackend, GenerationResult
from pipeline.generate.factory import BackendConfig, backend_identity, make_backend
from pipeline.generate.recorded import RecordingConfig
from pipeline.generate.journal import compact_journal, compacted_journal, read_journal
from pipeline.generate.rounds import RoundRules, SamplingConfig
from pipeline.generate.stage import GenerateConfig, GenerateStage
from pipeline.select.plan import SelectConfig
from pipeline.ingest.sources import SourceConfig
from pipeline.ingest.stage import IngestConfig, IngestStage
from pipeline.io import StageDir
from pipeline.stage import run_shard

SOURCES = [
    SourceConfig(name="tabmwp", format="tabmwp", path="tabmwp/problems.json", domain="table_math", limit=120),
    SourceConfig(name="gsm8k", format="gsm8k", path="gsm8k/test.jsonl", domain="arithmetic_word", limit=60),
]
BACKEND = BackendConfig(
    recordings=[
        RecordingConfig(source="tabmwp", format="tabmwp_gpt3", path="tabmwp/gpt3_cot_outputs.json", teacher="gpt3", roles=["teacher"]),
        RecordingConfig(
            source="gsm8k", format="gsm8k_solutions", path="gsm8k/example_model_solutions.jsonl", teacher="gsm8k", roles=["teacher"]
        ),
    ]
)


FIXED = RoundRules(SamplingConfig(mode="fixed"), SelectConfig())  # every sample, as these tests count them


class CountingBackend(GenerationBackend):
    """Wraps a backend and counts what is really sent."""

    def __init__(self, inner, sent):
        super().__init__(inner.teachers)
        self.inner, self.sent = inner, sent

    def requests_for(self, problem):
        return self.inner.requests_for(problem)

    def generate(self, requests):
        self.sent.extend(r.request_id for r in requests)
        return self.inner.generate(requests)


def make_stage(run_dir, data_root, sent, batch_size=50):
    factory = lambda: CountingBackend(make_backend(BACKEND, data_root), sent)  # noqa: E731
    return GenerateStage(GenerateConfig(batch_size=batch_size), factory, backend_identity(BACKEND), run_dir, rules=FIXED)


def ingest(run_dir, data_root):
    stage = IngestStage(IngestConfig(shard_size=1000), SOURCES, data_root)
    for shard in stage.shards():
        run_shard(stage, run_dir, shard)
    return stage.shards()


def test_recorded_generations_cover_every_teacher_sample(tmp_path, data_root):
    shards = ingest(tmp_path, data_root)
    sent: list[str] = []
    for shard in shards:
        run_shard(make_stage(tmp_path, data_root, sent), tmp_path, shard)
    tabmwp = StageDir(tmp_path, "generations").read("tabmwp-00000").to_pylist()
    gsm8k = StageDir(tmp_path, "generations").read("gsm8k-00000").to_pylist()
    assert len(tabmwp) == 120 and {r["teacher"] for r in tabmwp} == {"gpt3"}
    assert len(gsm8k) == 240 and len({r["teacher"] for r in gsm8k}) == 4
    assert "\\n" not in tabmwp[0]["raw_text"] and "\n" in tabmwp[0]["raw_text"]
    assert len(sent) == len(set(sent)) == 360


def test_rerun_after_a_partial_journal_sends_only_missing_requests(tmp_path, data_root):
    ingest(tmp_path, data_root)
    sent: list[str] = []
    stage = make_stage(tmp_path, data_root, sent, batch_size=100)
    full = functools.partial(run_shard, stage, tmp_path, "gsm8k-00000")
    full()
    journal = stage.journal_path("gsm8k-00000")
    # A finished shard's journal is compacted: every result in one Parquet file, the JSON lines gone.
    assert not journal.exists() and len(read_journal(journal)) == 240
    lines = [json.dumps(vars(result)).encode() + b"\n" for _, result in sorted(read_journal(journal).items())]
    # Simulate a kill: the marker, the output and the compacted journal gone, the JSON lines holding 100
    # results and a torn line.
    StageDir(tmp_path, "generations").marker_path("gsm8k-00000").unlink()
    compacted_journal(journal).unlink()
    journal.write_bytes(b"".join(lines[:100]) + lines[100][:25])
    assert len(read_journal(journal)) == 100
    sent.clear()
    before = StageDir(tmp_path, "generations").read("gsm8k-00000")
    full()
    after = StageDir(tmp_path, "generations").read("gsm8k-00000")
    assert len(sent) == 140
    assert len(read_journal(journal)) == 240  # the torn line was cut, not glued to the next result
    assert after.num_rows == 240 and len(set(after.column("request_id").to_pylist())) == 240
    assert after.equals(before)


def test_a_compacted_journal_keeps_results_no_longer_asked_for(tmp_path, data_root):
    """A rerun that asks for fewer samples (or after dedupe drops a problem) keeps the CoTs it already has."""
    ingest(tmp_path, data_root)
    stage = make_stage(tmp_path, data_root, [])
    run_shard(stage, tmp_path, "gsm8k-00000")
    journal = stage.journal_path("gsm8k-00000")
    kept = read_journal(journal)
    extra = GenerationResult("not-asked-any-more", "an earlier CoT", "stop", 10, 5)
    compact_journal(journal, kept | {extra.request_id: extra})
    StageDir(tmp_path, "generations").marker_path("gsm8k-00000").unlink()
    run_shard(stage, tmp_path, "gsm8k-00000")
    assert read_journal(journal) == kept | {extra.request_id: extra}


def test_parallel_shards_share_one_backend(tmp_path, data_root):
    from concurrent.futures import ThreadPoolExecutor

    shards = ingest(tmp_path, data_root)
    stage = make_stage(tmp_path, data_root, [])
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda shard: run_shard(stage, tmp_path, shard), shards))
    rows = [r for _, t in StageDir(tmp_path, "generations").iter_tables() for r in t.to_pylist()]
    assert len(rows) == 360 and all(r["error"] is None for r in rows)


MATHVISION_SETTINGS = ("Gemini-Pro-CoT", "Qwen-VL-Max-CoT", "Gemini-Pro", "LLaVA-v1.5-13B")


def test_mathvision_recordings_keep_teachers_and_rollouts_apart(tmp_path, data_root):
    """CoT settings are teachers and rollouts (two rows, same text); plain settings only rollouts."""
    source = SourceConfig(name="mathvision", format="mathvision", path="mathvision/test.jsonl", domain="visual_math", limit=20)
    stage = IngestStage(IngestConfig(shard_size=1000), [source], data_root)
    (shard,) = stage.shards()
    run_shard(stage, tmp_path, shard)
    backend = BackendConfig(
        recordings=[
            RecordingConfig(
                source="mathvision", format="mathvision_outputs", path=f"mathvision/outputs/{name}.jsonl", teacher=name,
                roles=["teacher", "rollout"] if name.endswith("-CoT") else ["rollout"],
            )
            for name in MATHVISION_SETTINGS
        ]
    )
    factory = functools.partial(make_backend, backend, data_root)
    run_shard(GenerateStage(GenerateConfig(), factory, backend_identity(backend), tmp_path, rules=FIXED), tmp_path, shard)
    rows = StageDir(tmp_path, "generations").read(shard).to_pylist()
    by_role = {role: sorted({r["teacher"] for r in rows if r["role"] == role}) for role in ("teacher", "rollout")}
    assert by_role == {"teacher": ["Gemini-Pro-CoT", "Qwen-VL-Max-CoT"], "rollout": sorted(MATHVISION_SETTINGS)}
    assert len(rows) == 20 * 6 and len({r["request_id"] for r in rows}) == 120
    recorded = {json.loads(line)["id"]: json.loads(line)["response"] for line in (data_root / "mathvision/outputs/Gemini-Pro-CoT.jsonl").read_text().splitlines()}
    problems = {p["problem_id"]: p["source_id"] for p in StageDir(tmp_path, "problems").read(shard).to_pylist()}
    gemini = [r for r in rows if r["teacher"] == "Gemini-Pro-CoT"]
    assert len(gemini) == 40 and all(r["raw_text"] == recorded[problems[r["problem_id"]]] for r in gemini)
