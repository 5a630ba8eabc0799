"""Peak memory of cold-start SFT on a tiny Qwen2.5-VL over the whole default cold-start set, streamed.

    make rl-data                    # the default run's sets (runs/default/datasets/...)
    python benchmarks/bench_sft_memory.py [--cold-start-dir DIR] [--batch-size 8] [--max-steps N]

One pass over every row (default: ceil(rows / batch) steps) through the SFT stage's real path (the `datasets`
stream -> TRL's SFTTrainer with the VL processor). Prints the process's resident memory after the first step, at
the middle and at the end, and the peak (getrusage), beside the size of the set: a stage that materialised the
set would grow with the rows it has read; a stream stays flat after the first shard's row group.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from transformers import TrainerCallback  # noqa: E402

from pipeline.models.tiny import build_tiny_qwen2_5_vl  # noqa: E402
from pipeline.train.sft import SFTStageConfig, build_sft_trainer  # noqa: E402

MIB = 1024 * 1024


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / MIB


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class MemoryLog(TrainerCallback):
    def __init__(self):
        self.by_step: list[tuple[int, float]] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.by_step.append((state.global_step, rss_mib()))
        if state.global_step % 10 == 0:  # progress, so a cut-short run still shows the trend
            print(f"step {state.global_step}/{state.max_steps}: RSS {self.by_step[-1][1]:.0f} MiB, peak {peak_rss_mib():.0f} MiB", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-start-dir", type=Path, default=REPO_ROOT / "runs" / "default" / "datasets" / "cold_start")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-steps", type=int)
    args = parser.parse_args(argv)
    import pyarrow.parquet as pq

    files = sorted(args.cold_start_dir.glob("data/*.parquet"))
    if not files:
        raise SystemExit(f"{args.cold_start_dir}: no published cold-start set (run `make rl-data`)")
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    on_disk = sum(f.stat().st_size for f in files) / MIB
    steps = args.max_steps or math.ceil(rows / args.batch_size)
    with tempfile.TemporaryDirectory(prefix="bench-sft-") as folder:
        base = build_tiny_qwen2_5_vl(Path(folder) / "base")
        config = SFTStageConfig(cold_start_dir=args.cold_start_dir, output_dir=Path(folder) / "sft", model_path=base,
                                max_steps=steps, batch_size=args.batch_size, max_length=2048)
        trainer, _ = build_sft_trainer(config)
        log = MemoryLog()
        trainer.add_callback(log)
        before = rss_mib()
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    middle = log.by_step[len(log.by_step) // 2]
    print(f"cold-start set: {rows} rows, {len(files)} shards, {on_disk:.1f} MiB of Parquet; {steps} steps x {args.batch_size} rows "
          f"= {steps * args.batch_size} rows streamed in {seconds:.0f} s")
    print(f"RSS before training {before:.0f} MiB; after step {log.by_step[0][0]} {log.by_step[0][1]:.0f} MiB; "
          f"step {middle[0]} {middle[1]:.0f} MiB; step {log.by_step[-1][0]} {log.by_step[-1][1]:.0f} MiB")
    print(f"peak RSS {peak_rss_mib():.0f} MiB; growth from step 1 to the end {log.by_step[-1][1] - log.by_step[0][1]:+.0f} MiB")


if __name__ == "__main__":
    main()
