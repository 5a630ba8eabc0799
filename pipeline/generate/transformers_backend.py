"""Generation with transformers `generate`, for small CPU runs and as vLLM's throughput baseline.

Each request is sampled on its own with its seed, so its text does not depend on what it was
batched with. A vision-language model (its config has a `vision_config`) gets the request's images through its
processor, laid out as TRL lays them out in training (ahead of the user's text); a text model given images fails
the request with a stated reason.
The reply's thinking is split off as for every backend (`GenerationResult.of_reply`); reasoning tokens
are not counted here.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from pipeline.config_base import StrictConfig
from pipeline.generate.base import GenerationBackend, GenerationRequest, GenerationResult, TeacherConfig


class TransformersConfig(StrictConfig):
    device: str = "cpu"
    trust_remote_code: bool = False


class TransformersBackend(GenerationBackend):
    def __init__(
        self,
        teachers: Sequence[TeacherConfig],
        config: TransformersConfig = TransformersConfig(),
        policy: Sequence[TeacherConfig] = (),
    ):
        super().__init__(teachers, policy)
        self.config = config
        self._models: dict[str, tuple] = {}

    def _load(self, model: str):
        """(processor or tokenizer, model, whether it reads images), loaded once per model."""
        if model not in self._models:
            from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

            import pipeline.models  # noqa: F401  registers the tiny Qwen2.5-VL processor with AutoProcessor

            remote = self.config.trust_remote_code
            vision = hasattr(AutoConfig.from_pretrained(model, trust_remote_code=remote), "vision_config")
            processor_class, model_class = (AutoProcessor, AutoModelForImageTextToText) if vision else (AutoTokenizer, AutoModelForCausalLM)
            network = model_class.from_pretrained(model, trust_remote_code=remote)
            self._models[model] = (processor_class.from_pretrained(model, trust_remote_code=remote), network.to(self.config.device).eval(), vision)  # type: ignore[arg-type]  # transformers types .to through a wrapper
        return self._models[model]

    def _one(self, request: GenerationRequest) -> GenerationResult:
        import torch

        processor, model, vision = self._load(request.model)
        if request.images and not vision:
            return GenerationResult(request.request_id, None, error="unsupported: a text-only model was given images")
        messages = request.messages
        if vision:
            from PIL import Image
            from trl import prepare_multimodal_messages

            messages = prepare_multimodal_messages(messages, images=[Image.open(io.BytesIO(data)) for data in request.images])
        tokenizer = getattr(processor, "tokenizer", processor)
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_tensors="pt", return_dict=True)
        prompt = {k: v.to(self.config.device) for k, v in prompt.items()}
        generator_seed = request.seed if request.seed is not None else 0
        torch.manual_seed(generator_seed)
        with torch.no_grad():
            output = model.generate(
                **prompt,
                do_sample=request.sampling.temperature > 0,
                temperature=max(request.sampling.temperature, 1e-5),
                top_p=request.sampling.top_p,
                max_new_tokens=request.sampling.max_tokens,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            )
        new_tokens = output[0, prompt["input_ids"].shape[1] :]
        finished = bool(len(new_tokens)) and int(new_tokens[-1]) == tokenizer.eos_token_id
        return GenerationResult.of_reply(
            request.request_id,
            tokenizer.decode(new_tokens, skip_special_tokens=True),
            tokenizer.decode(prompt["input_ids"][0]),
            finish_reason="stop" if finished else "length",
            prompt_tokens=int(prompt["input_ids"].shape[1]),
            completion_tokens=int(len(new_tokens)),
        )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        return [self._one(request) for request in requests]
