"""Replay of real recorded model outputs, for runs without a GPU.

The shared data carries real generations: GPT-3 CoTs on TabMWP, Bard and GPT-4 on MathVista, four
GSM8K model solutions per problem, and nine vision-language model settings on every MATH-V problem.
Each recording names the source whose problems it answers and the roles its outputs play (teacher CoTs
for the cold-start set, policy rollouts for the pass rate; an output in both roles becomes two rows).
Problems are matched by (source, source_id) and a recorded question must agree with the problem's.
Your own model's outputs use the generic `jsonl` format (see `_read_jsonl`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from pipeline.config_base import StrictConfig
from pipeline.generate.base import GenerationBackend, GenerationRequest, GenerationResult, SamplingParams, TeacherConfig, build_request
from pipeline.io import stable_hash
from pipeline.text import normalise_text

GSM8K_SOLUTION_KEYS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")
Role = Literal["teacher", "rollout"]
ROLES: tuple[Role, ...] = ("teacher", "rollout")


class RecordingConfig(StrictConfig):
    source: str  # the ingest source whose problems these outputs answer
    format: Literal["tabmwp_gpt3", "mathvista_responses", "gsm8k_solutions", "mathvision_outputs", "jsonl"]
    path: str  # relative to the run's data_root unless absolute
    teacher: str  # the model's label; gsm8k_solutions appends the solution key
    roles: list[Role] = Field(default_factory=lambda: list(ROLES), min_length=1)


# (teacher, source_id, question or None, text)
Recorded = tuple[str, str, str | None, str]


def _read_tabmwp_gpt3(path: Path, teacher: str) -> Iterator[Recorded]:
    for pid, row in json.loads(path.read_text()).items():
        # The published file stores line breaks as the two characters "\n".
        yield teacher, str(pid), None, str(row.get("output") or "").replace("\\n", "\n")


def _read_mathvista(path: Path, teacher: str) -> Iterator[Recorded]:
    for pid, row in json.loads(path.read_text()).items():
        yield teacher, str(row.get("pid", pid)), row.get("question"), str(row.get("response") or "")


def _read_gsm8k(path: Path, teacher: str) -> Iterator[Recorded]:
    for index, line in enumerate(path.read_text().splitlines()):
        row = json.loads(line)
        for key in GSM8K_SOLUTION_KEYS:
            if key in row:
                yield f"{teacher}-{key}", str(index), row.get("question"), row[key]["solution"]


def _read_mathvision(path: Path, teacher: str) -> Iterator[Recorded]:
    """MATH-V `outputs/<model>.jsonl`: one response per problem id (the benchmark's own `correct` is not read)."""
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                row = json.loads(line)
                yield teacher, str(row["id"]), None, str(row.get("response") or "")


def _read_jsonl(path: Path, teacher: str) -> Iterator[Recorded]:
    """Any model's outputs, one JSON object a line: `source_id` (the problem's id in its source, text or
    integer), `response` (the whole output, reasoning and final answer) and, optionally, `question` (when
    given, a line whose question is not the problem's is not used). Several lines with one source id are
    several samples. A line that breaks this is an error naming it: a recording is read whole at the start."""
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                raise ValueError(f"{path}:{number}: not a JSON object ({error})") from None
            source_id = row.get("source_id") if isinstance(row, dict) else None
            if isinstance(source_id, bool) or not isinstance(source_id, str | int) or not isinstance(row.get("response"), str):
                raise ValueError(f"{path}:{number}: needs a text or integer source_id and a text response")
            question = row.get("question")
            yield teacher, str(source_id), question if isinstance(question, str) else None, row["response"]


_READERS = {
    "tabmwp_gpt3": _read_tabmwp_gpt3,
    "mathvista_responses": _read_mathvista,
    "gsm8k_solutions": _read_gsm8k,
    "mathvision_outputs": _read_mathvision,
    "jsonl": _read_jsonl,
}


class RecordedBackend(GenerationBackend):
    def __init__(self, recordings: Sequence[RecordingConfig], data_root: Path):
        super().__init__()
        self._outputs: dict[tuple[str, str], list[tuple[str, tuple[str, ...], str | None, str]]] = {}
        for recording in recordings:
            path = Path(recording.path)
            path = path if path.is_absolute() else Path(data_root) / path
            roles = tuple(dict.fromkeys(recording.roles))
            for teacher, source_id, question, text in _READERS[recording.format](path, recording.teacher):
                self._outputs.setdefault((recording.source, source_id), []).append((teacher, roles, question, text))
        self._pending: dict[str, str] = {}

    def requests_for(self, problem: Mapping) -> list[GenerationRequest]:
        requests = []
        samples: dict[tuple[str, str], int] = {}
        for teacher, roles, question, text in self._outputs.get((problem["source"], problem["source_id"]), []):
            if question is not None and normalise_text(question) != problem["question"]:
                continue  # a recording for another problem that happens to share the id
            config = TeacherConfig(name=teacher, model=f"recorded:{teacher}", n_samples=1, sampling=SamplingParams())
            for role in roles:
                index = samples.get((teacher, role), 0)
                samples[(teacher, role)] = index + 1
                request = build_request(problem, config, index, role)
                self._pending[request.request_id] = text
                requests.append(request)
        return requests

    def sampling_order(self, requests: Sequence[GenerationRequest], seed: int) -> list[GenerationRequest]:
        """The recordings of one problem and role in a seeded random order, so that the first n replayed are a random
        n of them, as sampling would give (the configured order would always ask the same model first)."""
        if not requests:
            return []
        return random.Random(stable_hash([seed, requests[0].problem_id, requests[0].role])).sample(list(requests), len(requests))

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results = []
        for request in requests:
            text = self._pending.get(request.request_id)
            if text is None:
                results.append(GenerationResult(request.request_id, None, error="no_recording: request was not planned"))
            else:
                results.append(GenerationResult(request.request_id, text, finish_reason="stop", completion_tokens=len(text.split())))
        return results
