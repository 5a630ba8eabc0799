"""The HTTP backend against a local server that fails on purpose: bounded retries, recorded failures,
Retry-After respected, nothing lost under load, and a SIGKILLed stage resumes sending only what is missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from fake_openai_server import fake_openai
from pipeline.generate.base import SamplingParams, TeacherConfig, build_request
from pipeline.generate.openai_server import Endpoint, EndpointsDown, OpenAIServerBackend, OpenAIServerConfig
from pipeline.generate.server import free_port
from pipeline.io import StageDir
from pipeline.paths import REPO_ROOT

TEACHER = TeacherConfig(name="teacher", model="tiny", n_samples=1, sampling=SamplingParams(seed=1, max_tokens=16))


def problem(index: int, text: str) -> dict:
    return {"problem_id": f"p{index}", "domain": "arithmetic_word", "question": text, "images": [], "choices": None}


def backend(*urls: str, concurrency: int = 8, **overrides) -> OpenAIServerBackend:
    config = dict(max_retries=2, backoff_base_s=0.01, timeout_s=1.0) | overrides
    endpoints = [Endpoint(url=url, max_concurrency=concurrency) for url in urls]
    return OpenAIServerBackend([TEACHER], OpenAIServerConfig(endpoints=endpoints, **config))


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there


def test_failures_are_retried_then_recorded_and_the_rest_completes():
    modes = ["ok", "always500", "hang", "badjson", "429once", "ok"]
    requests = [build_request(problem(i, f"What is {i}? mode:{m}"), TEACHER, 0) for i, m in enumerate(modes)]
    with fake_openai() as server:
        results = backend(server.url).generate(requests)
        attempts = {m: next(n for key, n in server.attempts.items() if f"mode:{m}" in key) for m in modes}
        times_429 = [t for key, t in server.received if "mode:429once" in key]
    by_mode = dict(zip(modes, results))
    assert by_mode["ok"].text and by_mode["ok"].completion_tokens == 7 and by_mode["ok"].finish_reason == "stop"
    assert by_mode["always500"].error.startswith("http_500") and "3 attempts" in by_mode["always500"].error
    assert by_mode["hang"].error.startswith("timeout")
    assert by_mode["badjson"].error.startswith("malformed_response")
    assert by_mode["429once"].text is not None and by_mode["429once"].error is None
    assert len(times_429) == 2 and times_429[1] - times_429[0] >= 0.95  # Retry-After: 1 was honoured
    assert [r.request_id for r in results] == [r.request_id for r in requests]
    assert attempts == {"ok": 1, "always500": 3, "hang": 3, "badjson": 3, "429once": 2}


def test_load_with_drops_429s_and_500s_loses_nothing():
    requests = [build_request(problem(i, f"Question {i}"), TEACHER, 0) for i in range(2000)]
    with fake_openai(chaos=0.08, seed=3) as server:
        started = time.monotonic()
        results = backend(server.url, concurrency=64, max_retries=6, timeout_s=5.0).generate(requests)
        elapsed = time.monotonic() - started
        sent = len(server.received)
    assert [r.request_id for r in results] == [r.request_id for r in requests]
    assert all((r.text is None) != (r.error is None) for r in results)
    succeeded = sum(r.error is None for r in results)
    print(f"\nload: 2000 requests at 64-way concurrency, {sent} sent with retries, {succeeded} succeeded, {elapsed:.1f} s")
    assert succeeded >= 1990 and sent > 2000


STAGE_SCRIPT = """
import sys
from pipeline.generate.base import SamplingParams, TeacherConfig
from pipeline.generate.openai_server import Endpoint, EndpointsDown, OpenAIServerBackend, OpenAIServerConfig
from pipeline.generate.server import free_port
from pipeline.generate.stage import GenerateConfig, GenerateStage
from pipeline.stage import run_shard
run_dir, url = sys.argv[1], sys.argv[2]
teacher = TeacherConfig(name="teacher", model="tiny", n_samples=2, sampling=SamplingParams(seed=5, max_tokens=16))
config = OpenAIServerConfig(endpoints=[Endpoint(url=url, max_concurrency=4)], max_retries=1, backoff_base_s=0.01)
stage = GenerateStage(GenerateConfig(batch_size=8), lambda: OpenAIServerBackend([teacher], config), "fake", run_dir)
run_shard(stage, run_dir, "gsm8k-00000")
"""


def test_sigkill_midway_then_rerun_sends_only_missing_requests(tmp_path, data_root):
    from pipeline.ingest.sources import SourceConfig
    from pipeline.ingest.stage import IngestConfig, IngestStage
    from pipeline.generate.journal import read_journal
    from pipeline.stage import run_shard

    source = SourceConfig(name="gsm8k", format="gsm8k", path="gsm8k/test.jsonl", domain="arithmetic_word", limit=40)
    ingest = IngestStage(IngestConfig(shard_size=100), [source], data_root)
    run_shard(ingest, tmp_path, "gsm8k-00000")
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT)}
    with fake_openai(delay_s=0.05) as server:
        process = subprocess.Popen([sys.executable, "-c", STAGE_SCRIPT, str(tmp_path), server.url], env=env, start_new_session=True)
        deadline = time.monotonic() + 60
        while len(server.received) < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        sent_before = {key for key, _ in server.received}
        journaled = len(read_journal(tmp_path / "generations" / "_journal" / "gsm8k-00000.jsonl"))
        assert 0 < journaled < 80 and not StageDir(tmp_path, "generations").marker("gsm8k-00000")
        server.received.clear()
        subprocess.run([sys.executable, "-c", STAGE_SCRIPT, str(tmp_path), server.url], env=env, check=True, timeout=120)
        sent_after = [key for key, _ in server.received]
    assert len(sent_after) == 80 - journaled  # only what the journal did not hold
    assert len(set(sent_after)) == len(sent_after)
    assert len(sent_before | set(sent_after)) == 80
    rows = StageDir(tmp_path, "generations").read("gsm8k-00000").to_pylist()
    assert len(rows) == 80 and len({(r["problem_id"], r["teacher"], r["sample_index"]) for r in rows}) == 80
    assert all(r["error"] is None and r["raw_text"] for r in rows)


def test_a_dead_server_fails_fast_instead_of_failing_every_request():
    requests = [build_request(problem(i, f"Question {i}"), TEACHER, 0) for i in range(20)]
    started = time.monotonic()
    with pytest.raises(EndpointsDown, match="refuses connections"):
        backend(dead_url(), max_retries=50, backoff_base_s=0.05, endpoints_down_after_s=0.5).generate(requests)
    assert time.monotonic() - started < 5  # 50 retries each would take minutes


def test_a_live_endpoint_takes_over_from_a_dead_one():
    requests = [build_request(problem(i, f"Question {i}"), TEACHER, 0) for i in range(60)]
    with fake_openai(delay_s=0.01) as server:
        results = backend(dead_url(), server.url, concurrency=4, max_retries=3).generate(requests)
        answered = len(server.received)
    assert all(r.error is None and r.text for r in results) and answered == 60


def test_stream_keeps_every_slot_busy_across_journal_chunks(tmp_path, data_root):
    from pipeline.generate.stage import GenerateConfig, GenerateStage
    from pipeline.ingest.sources import SourceConfig
    from pipeline.ingest.stage import IngestConfig, IngestStage
    from pipeline.stage import run_shard

    source = SourceConfig(name="gsm8k", format="gsm8k", path="gsm8k/test.jsonl", domain="arithmetic_word", limit=48)
    run_shard(IngestStage(IngestConfig(shard_size=100), [source], data_root), tmp_path, "gsm8k-00000")
    with fake_openai(delay_s=0.05) as server:
        factory = lambda: backend(server.url, concurrency=16)  # noqa: E731
        run_shard(GenerateStage(GenerateConfig(batch_size=4), factory, "fake", tmp_path), tmp_path, "gsm8k-00000")
        peak = server.max_in_flight
    assert len(StageDir(tmp_path, "generations").read("gsm8k-00000")) == 48
    assert peak > 4  # requests overlap beyond one journal chunk: no barrier between chunks


def test_server_death_mid_shard_keeps_finished_results_and_rerun_sends_the_rest(tmp_path, data_root):
    from pipeline.generate.journal import read_journal
    from pipeline.generate.stage import GenerateConfig, GenerateStage
    from pipeline.ingest.sources import SourceConfig
    from pipeline.ingest.stage import IngestConfig, IngestStage
    from pipeline.stage import run_shard

    source = SourceConfig(name="gsm8k", format="gsm8k", path="gsm8k/test.jsonl", domain="arithmetic_word", limit=60)
    run_shard(IngestStage(IngestConfig(shard_size=100), [source], data_root), tmp_path, "gsm8k-00000")
    journal = tmp_path / "generations" / "_journal" / "gsm8k-00000.jsonl"

    def stage(url: str) -> GenerateStage:
        factory = lambda: backend(url, concurrency=4, max_retries=8, backoff_base_s=0.05, endpoints_down_after_s=0.5)  # noqa: E731
        return GenerateStage(GenerateConfig(batch_size=8), factory, "fake", tmp_path)

    with fake_openai(delay_s=0.02) as server:
        killer = threading.Thread(target=lambda: (wait_for(lambda: len(server.received) >= 20), server.shutdown(), server.server_close()))
        killer.start()
        with pytest.raises(EndpointsDown):
            run_shard(stage(server.url), tmp_path, "gsm8k-00000")
        killer.join()
    kept = read_journal(journal)
    assert 20 <= len(kept) < 60 and all(r.error is None for r in kept.values())  # nothing recorded as failed
    assert not StageDir(tmp_path, "generations").marker("gsm8k-00000")
    with fake_openai() as restarted:
        run_shard(stage(restarted.url), tmp_path, "gsm8k-00000")
        resent = len(restarted.received)
    rows = StageDir(tmp_path, "generations").read("gsm8k-00000").to_pylist()
    assert resent == 60 - len(kept) and len(rows) == 60 and all(r["error"] is None for r in rows)


def wait_for(condition, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
