"""What every generation backend implements: requests in, results out, one per request.

A request is keyed by a hash of everything that decides its output (model, messages, image hashes,
sampling parameters, sample index), so a rerun recognises work it already has.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, model_serializer, model_validator

from pipeline.config_base import StrictConfig
from pipeline.generate.reasoning import prompt_opens_thinking, split_reasoning
from pipeline.io import json_digest, stable_json
from pipeline.prompts import chat_messages

ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
REASONING_OPTIONS = ("thinking_budget", "reasoning_effort")


class SamplingParams(StrictConfig):
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 4096  # every generated token, the thinking included
    seed: int | None = None  # per-request seeds are derived from it and the sample index
    # A reasoning model's thinking: at most this many tokens of it (within max_tokens), and/or an effort
    # level; each sent in the form the server kind takes (openai_server.REQUEST_SHAPES), None: not sent.
    thinking_budget: int | None = Field(default=None, ge=0)
    reasoning_effort: ReasoningEffort | None = None

    @model_validator(mode="after")
    def _budget_leaves_room_for_an_answer(self) -> SamplingParams:
        if self.thinking_budget is not None and self.thinking_budget >= self.max_tokens:
            raise ValueError(f"thinking_budget {self.thinking_budget} leaves no room for an answer within max_tokens {self.max_tokens}")
        return self

    @model_serializer(mode="wrap")
    def _unset_reasoning_options_left_out(self, handler) -> dict:
        """An unset reasoning option is left out of the dump, so request ids (and every other hash of the
        sampling parameters) stay what they were before the options existed: journals keep answering."""
        dumped = handler(self)
        return {name: value for name, value in dumped.items() if name not in REASONING_OPTIONS or value is not None}


class TeacherConfig(StrictConfig):
    """A generating model: a teacher (`backend.teachers`) or the policy (`backend.policy`)."""

    name: str  # label written to the Generation rows
    model: str  # path or name the backend loads / the server serves
    n_samples: int = 4
    sampling: SamplingParams = Field(default_factory=SamplingParams)


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    problem_id: str
    teacher: str
    model: str
    sample_index: int
    role: str
    messages: list[dict[str, str]]
    images: list[bytes] = field(default_factory=list)
    sampling: SamplingParams = field(default_factory=SamplingParams)

    @property
    def seed(self) -> int | None:
        return None if self.sampling.seed is None else self.sampling.seed * 1_000_003 + self.sample_index


@dataclass(frozen=True)
class GenerationResult:
    request_id: str
    text: str | None  # the final content, after the thinking (None: failed, or cut off while thinking)
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None  # every generated token, the thinking included
    error: str | None = None  # "<kind>: <detail>" when the request failed for good
    reasoning: str | None = None  # the thinking, apart (None: the reply had none)
    reasoning_tokens: int | None = None  # as the server or engine counts them; None: not counted, never estimated

    @classmethod
    def of_reply(cls, request_id: str, reply: str, prompt: str, **counts) -> GenerationResult:
        """A decoded reply with its inline thinking split off (`prompt`: the rendered prompt, which may have
        opened the <think> block for the model)."""
        reasoning, content = split_reasoning(reply, opened=prompt_opens_thinking(prompt))
        return cls(request_id, content, reasoning=reasoning, **counts)


def request_ids(
    model: str, messages: list[dict], image_hashes: list[str], sampling: SamplingParams, sample_indices: Sequence[int], role: str
) -> list[str]:
    """Per sample index, `stable_hash([model, messages, image_hashes, sampling, sample_index, role])`, with
    the part the k samples of a prompt share encoded once."""
    shared = ",".join(stable_json(part) for part in (model, messages, image_hashes, sampling.model_dump(mode="json")))
    role_json = stable_json(role)
    return [json_digest(f"[{shared},{index},{role_json}]", length=24) for index in sample_indices]


def build_requests(problem: Mapping, teacher: TeacherConfig, sample_indices: Sequence[int], role: str = "teacher") -> list[GenerationRequest]:
    """One request per sample index of `teacher` for `problem`; the samples share its messages and images."""
    messages = chat_messages(problem)
    images = problem.get("images") or []
    image_bytes = [i["bytes"] for i in images]
    ids = request_ids(teacher.model, messages, [i["sha256"] for i in images], teacher.sampling, sample_indices, role)
    return [
        GenerationRequest(
            request_id=rid,
            problem_id=problem["problem_id"],
            teacher=teacher.name,
            model=teacher.model,
            sample_index=index,
            role=role,
            messages=messages,
            images=image_bytes,
            sampling=teacher.sampling,
        )
        for rid, index in zip(ids, sample_indices)
    ]


def build_request(problem: Mapping, teacher: TeacherConfig, sample_index: int, role: str = "teacher") -> GenerationRequest:
    return build_requests(problem, teacher, [sample_index], role)[0]


class GenerationBackend(ABC):
    """Backends differ in how they produce text, never in what a request or result is."""

    def __init__(self, teachers: Sequence[TeacherConfig] = (), policy: Sequence[TeacherConfig] = ()):
        self.teachers = list(teachers)
        self.policy = list(policy)

    def requests_for(self, problem: Mapping) -> list[GenerationRequest]:
        """Every teacher's CoT samples, then every policy model's rollouts (role "rollout")."""
        pools = (("teacher", self.teachers), ("rollout", self.policy))
        return [request for role, models in pools for m in models for request in build_requests(problem, m, range(m.n_samples), role)]

    def sampling_order(self, requests: Sequence[GenerationRequest], seed: int) -> list[GenerationRequest]:
        """The order in which rounds draw one problem's samples of one role: sample 0 of every model, then sample 1,
        and so on (a model's samples are independent draws, so every prefix is a sample, spread over the models)."""
        models = {name: position for position, name in enumerate(dict.fromkeys(r.teacher for r in requests))}
        return sorted(requests, key=lambda r: (r.sample_index, models[r.teacher]))

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """One result per request, same order; failures are results with `error` set."""

    def stream(self, requests: Sequence[GenerationRequest], chunk_size: int) -> Iterator[GenerationResult]:
        """One result per request, in any order, as they finish. Batch engines answer a chunk at a time (so a
        caller can persist progress between chunks); servers override this to keep every slot busy instead."""
        for start in range(0, len(requests), chunk_size):
            yield from self.generate(requests[start : start + chunk_size])

    def close(self) -> None:  # noqa: B027  a no-op default on purpose: a backend that holds nothing has nothing to close
        """Release engines, pools or connections."""
