"""Sampling decided per problem, on the real MATH-V recordings (nine model settings a problem, replayed in a seeded
order): the same selection decisions as fixed sampling with fewer rollouts, teachers only where selection keeps the
problem and only until it has enough verified chains of thought, the same bytes on a rerun."""

from __future__ import annotations

import functools
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from fake_openai_server import fake_openai

from pipeline.config import load_config
from pipeline.generate.factory import backend_identity, make_backend
from pipeline.generate.rounds import RoundRules, SamplingConfig
from pipeline.generate.journal import read_journal
from pipeline.generate.stage import GenerateConfig, GenerateStage
from pipeline.ingest.sources import SourceConfig
from pipeline.ingest.stage import IngestConfig, IngestStage
from pipeline.io import StageDir
from pipeline.paths import REPO_ROOT
from pipeline.prompts import user_text
from pipeline.score.difficulty import DifficultyStage, ScoreConfig
from pipeline.select.plan import rollout_decisions
from pipeline.stage import run_shard

CONFIG = load_config(None, ["train.mode=none"])
BACKEND = CONFIG.backend.model_copy(update={"recordings": [r for r in CONFIG.backend.recordings if r.source == "mathvision"]})
SHARD = "mathvision-00000"


def run(run_dir: Path, data_root: Path, mode: str, seed: int = 0) -> tuple[list[dict], dict[str, dict], Counter]:
    source = SourceConfig(name="mathvision", format="mathvision", path="mathvision/test.jsonl", domain="visual_math", limit=120)
    run_shard(IngestStage(IngestConfig(shard_size=500), [source], data_root), run_dir, SHARD)
    rules = RoundRules(SamplingConfig(mode=mode), CONFIG.select, seed=seed)
    stage = GenerateStage(CONFIG.generate, functools.partial(make_backend, BACKEND, data_root), backend_identity(BACKEND), run_dir, rules=rules)
    marker = run_shard(stage, run_dir, SHARD)
    stage.release()
    run_shard(DifficultyStage(ScoreConfig()), run_dir, SHARD)
    rows = StageDir(run_dir, "generations").read(SHARD).to_pylist()
    difficulty = {d["problem_id"]: d for d in StageDir(run_dir, "difficulty").read(SHARD).to_pylist()}
    return rows, difficulty, Counter(marker.stats)


@pytest.fixture(scope="module")
def fixed_and_adaptive(tmp_path_factory, data_root):
    return run(tmp_path_factory.mktemp("fixed"), data_root, "fixed"), run(tmp_path_factory.mktemp("adaptive"), data_root, "adaptive")


def verified_teacher_cots(rows: list[dict]) -> Counter[str]:
    return Counter(r["problem_id"] for r in rows if r["role"] == "teacher" and r["correct"] and r["quality_ok"])


def test_selection_decides_every_problem_as_under_fixed_sampling_with_fewer_rollouts(fixed_and_adaptive):
    (fixed_rows, fixed, fixed_stats), (rows, adaptive, stats) = fixed_and_adaptive
    assert fixed.keys() == adaptive.keys()
    for problem_id, full in fixed.items():
        got = adaptive[problem_id]
        decided = rollout_decisions(full["num_correct"], full["num_rollouts"], CONFIG.select)
        assert rollout_decisions(got["num_correct"], got["num_rollouts"], CONFIG.select) == decided, (full, got)
        assert got["num_rollouts"] <= full["num_rollouts"]
    rollouts = Counter(r["role"] for r in rows)["rollout"]
    assert rollouts == stats["requests_made_rollout"] < 0.8 * fixed_stats["requests_made_rollout"]
    assert fixed_stats["requests_made_rollout"] == fixed_stats["requests_fixed_rollout"] == stats["requests_fixed_rollout"]
    assert stats["rollouts_stopped_early"] > 0


def test_teachers_are_asked_only_where_selection_keeps_the_problem_and_until_it_has_enough(fixed_and_adaptive):
    (fixed_rows, fixed, fixed_stats), (rows, adaptive, stats) = fixed_and_adaptive
    target = CONFIG.select.cold_start_max_per_problem
    had, has = verified_teacher_cots(fixed_rows), verified_teacher_cots(rows)
    asked = Counter(r["problem_id"] for r in rows if r["role"] == "teacher")
    for problem_id, full in fixed.items():
        keeps = rollout_decisions(full["num_correct"], full["num_rollouts"], CONFIG.select)[0] is None
        if keeps:  # every problem the cold-start set keeps gets as many verified CoTs, up to the target
            assert has[problem_id] == min(had[problem_id], target), problem_id
        else:  # selection drops its CoTs (too easy for the policy): no teacher was asked
            assert asked[problem_id] == 0, problem_id
    assert stats["requests_made_teacher"] < fixed_stats["requests_made_teacher"]
    assert sum(v for k, v in stats.items() if k.startswith("skipped_teachers_")) == sum(
        1 for d in fixed.values() if rollout_decisions(d["num_correct"], d["num_rollouts"], CONFIG.select)[0] is not None
    )


def test_rows_keep_the_configured_order_and_the_seed_decides_the_replay_order(fixed_and_adaptive, tmp_path, data_root):
    (fixed_rows, _, _), (rows, _, _) = fixed_and_adaptive
    position = {r["request_id"]: i for i, r in enumerate(fixed_rows)}
    assert [position[r["request_id"]] for r in rows] == sorted(position[r["request_id"]] for r in rows)  # a subsequence
    again, _, _ = run(tmp_path / "again", data_root, "adaptive")
    assert again == rows  # same inputs and seed: the same requests, replies and verdicts
    other, _, _ = run(tmp_path / "other-seed", data_root, "adaptive", seed=1)
    assert {r["request_id"] for r in other} != {r["request_id"] for r in rows}


ROUNDS_SCRIPT = """
import sys
from pipeline.generate.base import SamplingParams, TeacherConfig
from pipeline.generate.openai_server import Endpoint, OpenAIServerBackend, OpenAIServerConfig
from pipeline.generate.stage import GenerateConfig, GenerateStage
from pipeline.stage import run_shard
from pipeline.verify.judge import VerifyStageConfig
run_dir, url = sys.argv[1], sys.argv[2]
teacher = TeacherConfig(name="teacher", model="tiny", n_samples=4, sampling=SamplingParams(seed=1, max_tokens=64))
policy = TeacherConfig(name="policy", model="tiny", n_samples=8, sampling=SamplingParams(seed=2, max_tokens=64))
config = OpenAIServerConfig(endpoints=[Endpoint(url=url, max_concurrency=4)], max_retries=2, backoff_base_s=0.01)
backend = lambda: OpenAIServerBackend([teacher], config, [policy])
stage = GenerateStage(GenerateConfig(batch_size=4), backend, "fake", run_dir, verify=VerifyStageConfig(workers=1))
run_shard(stage, run_dir, "gsm8k-00000")
"""


def graded_answers(golds: dict[str, str]):
    """The fake server's answers: each problem has its own accuracy, each sample (seed) its own draw against it."""

    def answer(text: str, seed: int | None) -> str:
        accuracy = int(hashlib.sha256(text.encode()).hexdigest()[:2], 16) / 255
        draw = int(hashlib.sha256(f"{text}|{seed}".encode()).hexdigest()[:4], 16) / 0xFFFF
        return golds[text] if draw < accuracy else "-1"

    return answer


def test_sigkill_in_the_middle_of_a_round_then_a_rerun_gives_the_uninterrupted_bytes(tmp_path, data_root):
    source = SourceConfig(name="gsm8k", format="gsm8k", path="gsm8k/test.jsonl", domain="arithmetic_word", limit=40)
    ingest = IngestStage(IngestConfig(shard_size=100), [source], data_root)
    for run_dir in (tmp_path / "reference", tmp_path / "killed"):
        run_shard(ingest, run_dir, "gsm8k-00000")
    golds = {user_text(p): p["answer"] for p in StageDir(tmp_path / "reference", "problems").read("gsm8k-00000").to_pylist()}
    script = [sys.executable, "-c", ROUNDS_SCRIPT]
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT)}
    with fake_openai(delay_s=0.02, answer_of=graded_answers(golds)) as server:
        subprocess.run([*script, str(tmp_path / "reference"), server.url], env=env, check=True, timeout=300)
        reference_sent = len(server.received)
        server.received.clear()
        process = subprocess.Popen([*script, str(tmp_path / "killed"), server.url], env=env, start_new_session=True)
        first_round = 2 * len(golds)  # the minimum two rollouts of every problem
        wait_for(lambda: len(server.received) >= first_round + 20, process)  # well inside a later round
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        journal = GenerateStage(GenerateConfig(), None, "fake", tmp_path / "killed").journal_path("gsm8k-00000")
        journaled = read_journal(journal)
        assert len(journaled) > first_round and not StageDir(tmp_path / "killed", "generations").marker("gsm8k-00000")
        server.received.clear()
        subprocess.run([*script, str(tmp_path / "killed"), server.url], env=env, check=True, timeout=300)
        resent = {key for key, _ in server.received}
    reference = StageDir(tmp_path / "reference", "generations")
    killed = StageDir(tmp_path / "killed", "generations")
    assert reference.marker("gsm8k-00000").stats["shard_rounds"] >= 3  # rounds really decided something
    assert reference_sent < len(golds) * 12  # fewer than every sample: adaptive
    assert (tmp_path / "killed" / "generations" / "gsm8k-00000.parquet").read_bytes() == (
        tmp_path / "reference" / "generations" / "gsm8k-00000.parquet"
    ).read_bytes()
    assert killed.marker("gsm8k-00000").content_sha256 == reference.marker("gsm8k-00000").content_sha256
    # the rerun asked only for what the journal lacked
    assert len(resent) == killed.marker("gsm8k-00000").stats["requests_sent"] == reference.total_rows() - len(journaled)


def wait_for(condition, process: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
