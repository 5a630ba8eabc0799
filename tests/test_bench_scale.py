"""`benchmarks/bench_scale.py --problems 20000`: every curate stage end to end on a generated corpus
with images, on worker processes, the stub teacher's time apart, the published cold-start set loading
and matching its card."""

from __future__ import annotations

import sys

import pytest

from pipeline.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import bench_scale  # noqa: E402

STAGES = ["ingest", "dedupe", "decontam", "generate", "difficulty", "diversity", "problem_type", "select_cold", "publish_cold", "select_rl", "publish_rl"]


@pytest.mark.slow
def test_bench_scale_20000_problems_end_to_end(tmp_path):
    problems = 20_000
    argv = ["--problems", str(problems), "--rollouts", "2", "--cot-chars", "400", "--shard-size", "2500", "--embedder", "static"]
    result = bench_scale.main([*argv, "--quiet", "--keep", str(tmp_path)])
    stages = {row["stage"]: row for row in result["stages"]}
    assert list(stages) == STAGES
    assert result["corpus"]["images"] == problems // bench_scale.IMAGE_EVERY
    assert stages["ingest"]["rows"] == problems  # every raw row became a problem (none quarantined)
    assert stages["generate"]["stub_teacher_s"] > 0 and stages["difficulty"]["stub_teacher_s"] == 0
    assert stages["generate"]["rows"] > 0  # generated and verified in rounds
    assert result["cold_start"]["matches"] and result["cold_start"]["rows"] > 0
    assert all(row["bytes_written"] > 0 for row in result["stages"])
    assert result["total"]["peak_rss_bytes"] < 8 * 2**30
