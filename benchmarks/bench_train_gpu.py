"""GPU only (not run on CPU machines): SFT and GRPO + VAS step times on the tiny models, GRPO generating with TRL's
vLLM colocate mode beside TRL's own transformers generation, in one process run.

    pip install vllm   # mainline vLLM (the CPU build cannot serve TRL's weight syncs)
    python benchmarks/bench_train_gpu.py --cold-start-dir DIR --rl-dir DIR [--steps 20]

Prints seconds per step for: SFT (tiny Qwen2.5-VL on the cold-start set), GRPO with transformers generation and
GRPO with vLLM colocate (tiny Qwen2 on the RL set), and the vLLM/transformers ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from pipeline.models.tiny import build_tiny_qwen2_5_vl, build_tiny_text_lm  # noqa: E402
from pipeline.train.config import TrainConfig  # noqa: E402
from pipeline.train.run import run_training  # noqa: E402
from pipeline.train.sft import SFTStageConfig, run_sft  # noqa: E402


def step_times(cold_start_dir: Path, rl_dir: Path, steps: int, folder: Path) -> dict[str, float]:
    sft = run_sft(SFTStageConfig(cold_start_dir=cold_start_dir, output_dir=folder / "sft", model_path=build_tiny_qwen2_5_vl(folder / "vl"),
                                 max_steps=steps, batch_size=8, device="auto"))
    text = build_tiny_text_lm(folder / "text")
    times = {"sft": sft.train_seconds / max(1, sft.steps)}
    for name, use_vllm in (("grpo_transformers", False), ("grpo_vllm_colocate", True)):
        result = run_training(TrainConfig(rl_dataset_dir=rl_dir, output_dir=folder / name, model_path=text, max_steps=steps,
                                          num_generations=8, prompts_per_step=8, max_completion_length=256, use_vllm=use_vllm, device="auto"))
        times[name] = result.train_seconds / max(1, result.steps)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-start-dir", type=Path, required=True)
    parser.add_argument("--rl-dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-train-gpu-") as folder:
        times = step_times(args.cold_start_dir, args.rl_dir, args.steps, Path(folder))
    for name, seconds in times.items():
        print(f"{name:22} {seconds:.3f} s/step")
    print(f"vLLM colocate / transformers generation: {times['grpo_vllm_colocate'] / times['grpo_transformers']:.2f}x")


if __name__ == "__main__":
    main()
