"""What every generation backend implements: requests in, results out, one per request.

A request is keyed by a hash of everything that decides its output (model, messages, image hashes,
sampling parameters, sample index), so a rerun recognises work it already has.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import Field

from pipeline.config_base import StrictConfig
from pipeline.io import stable_hash
from pipeline.prompts import chat_messages


class SamplingParams(StrictConfig):
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 4096
    seed: int | None = None  # per-request seeds are derived from it and the sample index


class TeacherConfig(StrictConfig):
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
    messages: list[dict[str, str]]
    images: list[bytes] = field(default_factory=list)
    sampling: SamplingParams = field(default_factory=SamplingParams)

    @property
    def seed(self) -> int | None:
        return None if self.sampling.seed is None else self.sampling.seed * 1_000_003 + self.sample_index


@dataclass(frozen=True)
class GenerationResult:
    request_id: str
    text: str | None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None  # "<kind>: <detail>" when the request failed for good


def request_id(model: str, messages: list[dict], image_hashes: list[str], sampling: SamplingParams, sample_index: int) -> str:
    return stable_hash([model, messages, image_hashes, sampling.model_dump(mode="json"), sample_index], length=24)


def build_request(problem: Mapping, teacher: TeacherConfig, sample_index: int) -> GenerationRequest:
    messages = chat_messages(problem)
    images = problem.get("images") or []
    return GenerationRequest(
        request_id=request_id(teacher.model, messages, [i["sha256"] for i in images], teacher.sampling, sample_index),
        problem_id=problem["problem_id"],
        teacher=teacher.name,
        model=teacher.model,
        sample_index=sample_index,
        messages=messages,
        images=[i["bytes"] for i in images],
        sampling=teacher.sampling,
    )


class GenerationBackend(ABC):
    """Backends differ in how they produce text, never in what a request or result is."""

    def __init__(self, teachers: Sequence[TeacherConfig] = ()):
        self.teachers = list(teachers)

    def requests_for(self, problem: Mapping) -> list[GenerationRequest]:
        return [build_request(problem, t, i) for t in self.teachers for i in range(t.n_samples)]

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """One result per request, same order; failures are results with `error` set."""

    def stream(self, requests: Sequence[GenerationRequest], chunk_size: int) -> Iterator[GenerationResult]:
        """One result per request, in any order, as they finish. Batch engines answer a chunk at a time (so a
        caller can persist progress between chunks); servers override this to keep every slot busy instead."""
        for start in range(0, len(requests), chunk_size):
            yield from self.generate(requests[start : start + chunk_size])

    def close(self) -> None:
        """Release engines, pools or connections."""
