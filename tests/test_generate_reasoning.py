"""Reasoning outputs: the thinking is read in every shape servers send it, kept apart from the final
content through generate -> verify -> difficulty -> the cold-start set, and a reply cut off by its token
limit is one result (sent once), judged "truncated", never a cold-start example. The request carries the
token limit and the thinking budget in the form each server kind takes, and a combination a server
cannot take fails at config validation."""

from __future__ import annotations

import pyarrow as pa
import pytest

from fake_openai_server import REASONING_SHAPES, fake_openai, thinking_for
from pipeline.config_base import ConfigError, validate_config
from pipeline.generate.base import GenerationResult, SamplingParams, TeacherConfig, build_request
from pipeline.generate.factory import BackendConfig
from pipeline.generate.openai_server import (
    REQUEST_SHAPES,
    Endpoint,
    OpenAIServerBackend,
    OpenAIServerConfig,
    RetryableError,
    chat_payload,
    parse_completion,
)
from pipeline.generate.reasoning import prompt_opens_thinking, split_reasoning
from pipeline.generate.rounds import RoundRules, SamplingConfig
from pipeline.generate.stage import GenerateConfig, GenerateStage
from pipeline.index import load_manifest
from pipeline.io import StageDir
from pipeline.prompts import user_text
from pipeline.score.difficulty import DifficultyStage, ScoreConfig
from pipeline.select.plan import SelectConfig, SelectionPlan
from pipeline.select.stage import ColdStartStage
from pipeline.stage import run_shard
from pipeline.verify.judge import VerifyStageConfig

SHARD = "gsm8k-00000"


@pytest.mark.parametrize(
    "text, opened, expected",
    [
        ("<think>\nwork\n</think>\n\nThe answer is 4.", False, ("\nwork\n", "\n\nThe answer is 4.")),
        ("work\n</think>\n\nThe answer is 4.", False, ("work\n", "\n\nThe answer is 4.")),  # <think> was in the prompt
        ("The answer is 4.", False, (None, "The answer is 4.")),  # no tag: all content
        ("<think>still working", False, ("still working", None)),  # cut off while thinking
        ("still working", True, ("still working", None)),  # the prompt opened <think>: cut off while thinking
        ("<think>done</think>", False, ("done", None)),  # nothing after the thinking: no content, as vLLM returns it
        (None, False, (None, None)),
    ],
)
def test_split_reasoning(text, opened, expected):
    assert split_reasoning(text, opened=opened) == expected


def test_a_prompt_opens_thinking_only_when_its_last_think_tag_is_open():
    assert prompt_opens_thinking("<|im_start|>assistant\n<think>\n")
    assert not prompt_opens_thinking("<think>a</think> <|im_start|>assistant\n") and not prompt_opens_thinking("plain")
    assert GenerationResult.of_reply("r", "a </think> b", "x").reasoning == "a "


TEACHER = TeacherConfig(name="teacher", model="tiny", n_samples=1, sampling=SamplingParams(seed=1, max_tokens=64))


def problem(index: int, text: str) -> dict:
    return {"problem_id": f"p{index}", "domain": "arithmetic_word", "question": text, "images": [], "choices": None}


def backend(url: str, **endpoint) -> OpenAIServerBackend:
    config = OpenAIServerConfig(endpoints=[Endpoint(url=url, max_concurrency=4, **endpoint)], max_retries=4, backoff_base_s=0.01)
    return OpenAIServerBackend([TEACHER], config)


def test_every_server_shape_lands_in_the_result_and_a_truncated_reply_is_sent_once():
    requests = [build_request(problem(i, f"What is {i}? mode:{shape}"), TEACHER, 0) for i, shape in enumerate(REASONING_SHAPES)]
    with fake_openai() as server:
        results = dict(zip(REASONING_SHAPES, backend(server.url).generate(requests)))
        attempts = {shape: next(n for key, n in server.attempts.items() if f"mode:{shape}" in key) for shape in REASONING_SHAPES}
    thinking = thinking_for(TEACHER.sampling.seed * 1_000_003)  # the seed of sample 0
    thinking_tokens = len(thinking.split())
    for shape in ("reasoning", "reasoning_content", "inline", "inline_open_in_prompt"):
        result = results[shape]
        assert result.reasoning.strip() == thinking and result.text.strip() == "So the answer is \\boxed{1000003}.", shape
        assert (result.finish_reason, result.error, result.reasoning_tokens) == ("stop", None, thinking_tokens), shape
    truncated = results["truncated"]
    assert (truncated.text, truncated.reasoning, truncated.finish_reason) == (None, thinking, "length")
    assert (truncated.completion_tokens, truncated.reasoning_tokens, truncated.error) == (64, thinking_tokens, None)
    plain = results["plain"]
    assert (plain.text, plain.reasoning, plain.reasoning_tokens) == ("So the answer is \\boxed{1000003}.", None, None)  # not reported: null
    assert attempts == dict.fromkeys(REASONING_SHAPES, 1)  # the truncated reply too: a result, not a malformed reply


@pytest.mark.parametrize(
    "message, finish_reason, expected",
    [
        ({"content": "partial answer"}, "length", ("partial answer", None)),  # cut off in the answer: a result
        ({"content": None}, "length", (None, None)),  # cut off with nothing to show: still a result
        ({"content": None, "reasoning": ""}, "stop", (None, "")),  # thought nothing, answered nothing: a result
        ({"content": "x", "reasoning": None, "reasoning_content": "why"}, "stop", ("x", "why")),  # null field skipped
    ],
)
def test_a_reply_cut_off_or_empty_is_a_result(message, finish_reason, expected):
    result = parse_completion("r", {"choices": [{"message": message, "finish_reason": finish_reason}]})
    assert (result.text, result.reasoning, result.finish_reason) == (*expected, finish_reason)


def test_a_finished_reply_with_neither_content_nor_reasoning_is_malformed():
    with pytest.raises(RetryableError, match="malformed_response: TypeError: the reply has neither"):
        parse_completion("r", {"choices": [{"message": {"content": None}, "finish_reason": "stop"}]})


def test_thirty_problems_with_every_third_reply_truncated_take_thirty_requests():
    """The issue's case (44 requests before): each truncated reply is a result on its first answer."""
    shapes = ["truncated" if i % 3 == 2 else "reasoning" for i in range(30)]
    requests = [build_request(problem(i, f"What is {i}? mode:{shape}"), TEACHER, 0) for i, shape in enumerate(shapes)]
    with fake_openai() as server:
        results = backend(server.url).generate(requests)
        sent = len(server.received)
    assert sent == len(requests) and all(r.error is None for r in results)
    assert sum(r.finish_reason == "length" for r in results) == shapes.count("truncated")


def test_each_server_kind_gets_max_tokens_and_the_thinking_budget_in_its_own_form():
    budget = build_request(problem(0, "q"), TeacherConfig(name="t", model="m", sampling=SamplingParams(max_tokens=900, thinking_budget=600)), 0)
    effort = build_request(problem(0, "q"), TeacherConfig(name="t", model="m", sampling=SamplingParams(max_tokens=900, reasoning_effort="none")), 0)
    forms = {kind: chat_payload(budget, kind) for kind in ("vllm", "sglang", "openrouter")}
    assert {kind: {k: v for k, v in payload.items() if k in ("max_tokens", "thinking_token_budget", "custom_params", "reasoning")}
            for kind, payload in forms.items()} == {
        "vllm": {"max_tokens": 900, "thinking_token_budget": 600},
        "sglang": {"max_tokens": 900, "custom_params": {"thinking_budget": 600}},
        "openrouter": {"max_tokens": 900, "reasoning": {"max_tokens": 600}},
    }  # fmt: skip
    assert chat_payload(effort, "deepseek")["thinking"] == {"type": "disabled"} and "reasoning_effort" not in chat_payload(effort, "deepseek")
    openai = chat_payload(effort, "openai")
    assert openai["max_completion_tokens"] == 900 and openai["reasoning_effort"] == "none" and "max_tokens" not in openai
    assert set(REQUEST_SHAPES) == {"vllm", "sglang", "deepseek", "openrouter", "openai"}
    # Unset options are sent as nothing, and leave the request id what it was before they existed.
    plain = chat_payload(build_request(problem(0, "q"), TEACHER, 0), "vllm")
    assert not {"thinking_token_budget", "reasoning_effort"} & set(plain)
    assert "thinking_budget" not in TEACHER.sampling.model_dump(mode="json")


def test_a_thinking_budget_reaches_the_server_through_the_client():
    sampling = SamplingParams(seed=1, max_tokens=64, thinking_budget=16)
    teacher = TeacherConfig(name="t", model="tiny", n_samples=1, sampling=sampling)
    with fake_openai() as server:
        config = OpenAIServerConfig(endpoints=[Endpoint(url=server.url, server_kind="sglang")])
        [result] = OpenAIServerBackend([teacher], config).generate([build_request(problem(0, "q mode:reasoning"), teacher, 0)])
        [payload] = server.payloads
    assert result.reasoning and payload["custom_params"] == {"thinking_budget": 16} and payload["max_tokens"] == 64


@pytest.mark.parametrize(
    "backend_config, message",
    [
        ({"kind": "openai", "openai": {"endpoints": [{"url": "u", "server_kind": "deepseek"}]}, "sampling": {"thinking_budget": 10}},
         "takes no thinking_budget in tokens"),
        ({"kind": "openai", "openai": {"endpoints": [{"url": "u", "server_kind": "openai"}]}, "sampling": {"reasoning_effort": "max"}},
         "takes no reasoning_effort 'max'"),
        ({"kind": "openai", "openai": {"endpoints": [{"url": "u", "server_kind": "openrouter"}]},
          "sampling": {"thinking_budget": 10, "reasoning_effort": "low"}}, "not both"),
        ({"kind": "openai", "openai": {"endpoints": [{"url": "u", "server_kind": "tgi"}]}, "sampling": {}}, "server_kind"),
        ({"kind": "vllm", "sampling": {"thinking_budget": 10}}, "vllm.reasoning_parser"),
        ({"kind": "transformers", "sampling": {"reasoning_effort": "low"}}, "takes no reasoning_effort"),
        ({"kind": "openai", "sampling": {"thinking_budget": 4096}}, "leaves no room for an answer"),
    ],
)  # fmt: skip
def test_a_reasoning_option_the_server_cannot_take_fails_at_config_validation(backend_config, message):
    sampling = backend_config.pop("sampling")
    tree = backend_config | {"teachers": [{"name": "t", "model": "m", "sampling": sampling}]}
    with pytest.raises(ConfigError, match=message):
        validate_config(BackendConfig, tree)


def test_the_same_options_validate_where_the_server_takes_them():
    sampling = {"thinking_budget": 10, "reasoning_effort": "high"}
    for kind in ("vllm", "sglang"):
        validate_config(BackendConfig, {"kind": "openai", "openai": {"endpoints": [{"url": "u", "server_kind": kind}]},
                                        "teachers": [{"name": "t", "model": "m", "sampling": sampling}]})  # fmt: skip
    validate_config(BackendConfig, {"kind": "vllm", "vllm": {"reasoning_parser": "deepseek_r1"},
                                    "teachers": [{"name": "t", "model": "m", "sampling": {"thinking_budget": 10}}]})  # fmt: skip


def shape_of_problem(problems: list[dict]) -> dict[str, str]:
    """Each real problem's user text -> a reply shape, the shapes in turn."""
    return {user_text(p): REASONING_SHAPES[i % len(REASONING_SHAPES)] for i, p in enumerate(problems)}


@pytest.mark.parametrize("truncated_rollouts", ["wrong", "excluded"])
def test_thinking_reaches_the_cold_start_turn_and_a_truncated_reply_never_does(tmp_path, data_root, truncated_rollouts):
    from pipeline.ingest.sources import SourceConfig
    from pipeline.ingest.stage import IngestConfig, IngestStage

    source = SourceConfig(name="gsm8k", format="gsm8k", path="gsm8k/test.jsonl", domain="arithmetic_word", limit=2 * len(REASONING_SHAPES))
    run_shard(IngestStage(IngestConfig(), [source], data_root), tmp_path, SHARD)
    problems = StageDir(tmp_path, "problems").read(SHARD).to_pylist()
    shapes, answers = shape_of_problem(problems), {user_text(p): p["answer"] for p in problems}
    shape_by_id = {p["problem_id"]: shapes[user_text(p)] for p in problems}
    teacher = TeacherConfig(name="teacher", model="tiny", n_samples=1, sampling=SamplingParams(seed=3, max_tokens=256))
    policy = TeacherConfig(name="policy", model="tiny", n_samples=1, sampling=SamplingParams(seed=4, max_tokens=256))
    with fake_openai(shape_of=shapes.get, answer_of=lambda text, seed: answers[text]) as server:
        config = OpenAIServerConfig(endpoints=[Endpoint(url=server.url, max_concurrency=4)], max_retries=4, backoff_base_s=0.01)
        factory = lambda: OpenAIServerBackend([teacher], config, [policy])  # noqa: E731
        fixed = RoundRules(SamplingConfig(mode="fixed"), SelectConfig(), truncated_rollouts)
        stage = GenerateStage(GenerateConfig(batch_size=4), factory, "fake", tmp_path, verify=VerifyStageConfig(workers=1), rules=fixed)
        run_shard(stage, tmp_path, SHARD)
        stage.release()
        sent = len(server.received)
    assert sent == 2 * len(problems)  # one request per teacher CoT and rollout: the truncated ones were not resent
    verified = StageDir(tmp_path, "generations").read(SHARD).to_pylist()  # verified as they came
    for row in verified:
        shape = shape_by_id[row["problem_id"]]
        if shape == "plain":
            assert row["reasoning"] is None and row["reasoning_tokens"] is None and row["correct"]
        elif shape == "truncated":
            assert row["raw_text"] is None and row["reasoning"] and row["finish_reason"] == "length"
            assert (row["correct"], row["verdict_reason"]) == (False, "truncated")
            assert row["role"] == "rollout" or (row["quality_ok"], row["quality_reason"]) == (False, "truncated")
        else:  # the answer is read from the final content, the thinking is kept apart
            assert row["reasoning"].strip().startswith("First I restate") and "<think>" not in row["raw_text"]
            assert row["correct"] and row["extracted_answer"] is not None and row["reasoning_tokens"] > 0
            assert row["role"] == "rollout" or row["quality_ok"], row["quality_reason"]

    run_shard(DifficultyStage(ScoreConfig(truncated_rollouts=truncated_rollouts)), tmp_path, SHARD)
    rates = {r["problem_id"]: r["pass_rate"] for r in StageDir(tmp_path, "difficulty").read(SHARD).to_pylist()}
    truncated_ids = {pid for pid, shape in shape_by_id.items() if shape == "truncated"}
    expected_truncated_rate = 0.0 if truncated_rollouts == "wrong" else None  # one rollout each: wrong, or not counted
    assert {rates[pid] for pid in truncated_ids} == {expected_truncated_rate}
    assert {rate for pid, rate in rates.items() if pid not in truncated_ids} == {1.0}

    types = pa.table({"problem_id": [p["problem_id"] for p in problems], "problem_type": ["arithmetic"] * len(problems)})
    StageDir(tmp_path, "problem_type").write(SHARD, types, "test", {})
    plan = SelectionPlan(SelectConfig(cold_start_max_pass_rate=1.0, cold_start_min_rollouts=1), "cold_start", [], seed=0)
    plan_dir = plan.prepare(tmp_path, [SHARD])
    run_shard(ColdStartStage(plan_dir), tmp_path, SHARD)
    cold_start = StageDir(tmp_path, "cold_start").read(SHARD).to_pylist()
    teacher_rows = {r["problem_id"]: r for r in verified if r["role"] == "teacher"}
    assert {r["problem_id"] for r in cold_start} == set(teacher_rows) - truncated_ids
    for example in cold_start:
        generation, turn = teacher_rows[example["problem_id"]], example["messages"][-1]["content"]
        if generation["reasoning"] is None:
            assert turn == f"<think>\n{generation['raw_text']}\n</think>\n\n\\boxed{{{example['answer']}}}"  # as before
        else:
            assert turn == f"<think>\n{generation['reasoning'].strip()}\n</think>\n\n{generation['raw_text'].strip()}"
    drops = load_manifest(plan_dir)["drops"]
    assert drops.get("dropped_generation_incorrect", 0) == len(truncated_ids)  # judged "truncated": wrong
