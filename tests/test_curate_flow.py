"""The curate flow on the embedded default (the shared real data): sets that load, cards that match."""

from __future__ import annotations

import json
import re
import shutil
import statistics
from collections import Counter

import datasets
import pytest
import yaml

from flows.curate import curate
from pipeline.io import StageDir
from pipeline.publish.dataset import published_rows


@pytest.fixture(scope="module")
def run(default_run):
    return default_run


def load(folder, tmp_path_factory):
    """A private cache: `datasets` caches local folders by path, and pytest reuses temporary paths."""
    return datasets.load_dataset(str(folder), split="train", cache_dir=str(tmp_path_factory.mktemp("hf-cache")))


def card_counts(card: str, section_header: str) -> dict[str, int]:
    table = card.split(f"| {section_header} | rows |")[1].split("\n\n")[0]
    return {m[0]: int(m[1]) for m in re.findall(r"^\| (\S+) \| (\d+) \|", table, re.M)}


def test_rl_set_loads_with_trl_columns_and_its_card_counts_match(run, tmp_path_factory):
    run_dir, published, _ = run
    folder = published["rl"]
    rl = load(folder, tmp_path_factory)
    assert isinstance(rl.features["images"], datasets.List) and isinstance(rl.features["images"].feature, datasets.Image)
    assert len(rl) > 0 and all(0 < p < 1 for p in rl["pass_rate"])
    assert [m["role"] for m in rl[0]["prompt"]] == ["system", "user"]
    card = (run_dir / "datasets" / "rl" / "README.md").read_text()
    assert f"{len(rl)} prompts" in card
    assert sum(card_counts(card, "source").values()) == len(rl) == published_rows(run_dir / "datasets" / "rl")
    assert (run_dir / "datasets" / "rl" / "difficulty.png").stat().st_size > 1000


def test_rl_set_is_multimodal_and_balanced_over_problem_types(run, tmp_path_factory):
    run_dir, published, _ = run
    rl = load(published["rl"], tmp_path_factory).select_columns(["images", "problem_type", "source", "num_rollouts", "num_correct", "pass_rate"])
    with_images = sum(1 for images in rl["images"] if images)
    assert with_images / len(rl) >= 0.6
    types = Counter(rl["problem_type"])
    assert len(types) >= 12 and max(types.values()) <= 2 * statistics.median(types.values())
    # rounds stop a problem's rollouts once selection's decisions are settled: two at least, the nine settings at most
    assert {n for n in rl.filter(lambda row: row["source"] == "mathvision")["num_rollouts"]} <= set(range(2, 10))
    assert all(0 < c < n and p == c / n for c, n, p in zip(rl["num_correct"], rl["num_rollouts"], rl["pass_rate"]))
    card = (run_dir / "datasets" / "rl" / "README.md").read_text()
    assert card_counts(card, "problem type") == dict(types)
    assert f"{100 * with_images / len(rl):.1f}% of rows carry an image" in card
    assert (run_dir / "datasets" / "rl" / "problem_types.png").stat().st_size > 1000
    metadata = yaml.safe_load(card.split("---")[1])  # the Hub's card metadata block
    assert metadata["license"] == "mit" and metadata["language"] == ["en"] and metadata["size_categories"] == ["n<1K"]
    assert metadata["pretty_name"] and "image-text-to-text" in metadata["task_categories"]


def test_decontam_flags_exactly_the_mathvision_testmini_problems(run, data_root):
    run_dir, _, _ = run
    testmini = {json.loads(line)["id"] for line in (data_root / "mathvision" / "testmini.jsonl").read_text().splitlines()}
    flagged = set()
    for shard in StageDir(run_dir, "problems").done_shards():
        problems = StageDir(run_dir, "problems").read(shard, columns=["source", "source_id"]).to_pylist()
        flags = StageDir(run_dir, "decontam").read(shard).column("contaminated_mathvision_testmini").to_pylist()
        flagged |= {(p["source"], p["source_id"]) for p, flag in zip(problems, flags) if flag}
    assert flagged == {("mathvision", source_id) for source_id in testmini} and len(flagged) == 304
    stats = json.loads((run_dir / "decontam" / "stats.json").read_text())
    assert stats["counts"]["contaminated_mathvision_testmini"] == 304


def test_cold_start_set_has_images_and_verified_cots(run, tmp_path_factory):
    run_dir, published, _ = run
    cold = load(published["cold_start"], tmp_path_factory)
    with_images = cold.filter(lambda row: len(row["images"]) > 0)
    mathvision = with_images.filter(lambda row: row["source"] == "mathvision")
    # Verified MATH-V teacher CoTs with their diagrams, only for problems the policy finds medium or hard.
    assert len(mathvision) > 300 and set(mathvision["teacher"]) <= {"Gemini-Pro-CoT", "Qwen-VL-Max-CoT", "InternLM-XComposer2-VL-CoT"}
    assert all(0 < p <= 0.8 for p in mathvision["pass_rate"])
    image = mathvision[0]["images"][0]
    assert image.mode == "RGB" and image.size[0] > 0
    assistant = cold[0]["messages"][-1]
    assert assistant["role"] == "assistant" and "<think>" in assistant["content"] and "\\boxed{" in assistant["content"]
    card = (run_dir / "datasets" / "cold_start" / "README.md").read_text()
    assert card_counts(card, "source") == dict(sorted(Counter(cold["source"]).items()))
    assert card_counts(card, "teacher") == dict(sorted(Counter(cold["teacher"]).items()))
    assert "| tabmwp |" in card and "CC-BY-NC-SA-4.0" in card and yaml.safe_load(card.split("---")[1])["license"] == "other"
    assert (run_dir / "datasets" / "cold_start" / "cot_tokens.png").stat().st_size > 1000
    stats = yaml.safe_load((run_dir / "cold_start" / "stats.json").read_text())
    assert stats["counts"]["rows_out"] == len(cold)


def test_rerun_recomputes_nothing_and_is_identical(run):
    run_dir, published, overrides = run
    markers = {p: p.read_bytes() for p in run_dir.rglob("*.done")}
    before = {p: p.read_bytes() for p in (run_dir / "datasets").rglob("*") if p.is_file()}
    curate(target="all", overrides=overrides)
    assert {p: p.read_bytes() for p in run_dir.rglob("*.done")} == markers
    assert {p: p.read_bytes() for p in (run_dir / "datasets").rglob("*") if p.is_file()} == before
    # One verified row per sample the rounds asked for, never more than fixed sampling would have asked.
    generated = StageDir(run_dir, "generations").total_rows()
    counts = yaml.safe_load((run_dir / "generations" / "stats.json").read_text())["counts"]
    made = {role: counts[f"requests_made_{role}"] for role in ("teacher", "rollout")}
    assert generated == sum(made.values()) and all(made[role] <= counts[f"requests_fixed_{role}"] for role in made)
    assert sum(v for k, v in counts.items() if k.startswith("verdict_")) + counts.get("skipped_failed_generation", 0) == generated


def markers_of(run_dir):
    return {p.relative_to(run_dir): (p.read_bytes(), p.stat().st_mtime_ns) for p in run_dir.rglob("*.done")}


def test_changing_only_runtime_knobs_reruns_nothing(run):
    run_dir, _, overrides = run
    markers = markers_of(run_dir)
    indexes = sorted(run_dir.glob("*_index/*"))
    before = {p: p.read_bytes() for p in (run_dir / "datasets").rglob("*") if p.is_file()}
    knobs = ["verify.workers=1", "dedupe.workers=2", "generate.batch_size=7", "generate.flush_every_s=1", "diversity.batch_size=16"]
    curate(target="all", overrides=overrides + knobs)
    assert markers_of(run_dir) == markers  # every marker reused, none rewritten
    assert sorted(run_dir.glob("*_index/*")) == indexes  # no global step rebuilt under another key
    assert {p: p.read_bytes() for p in (run_dir / "datasets").rglob("*") if p.is_file()} == before


def test_a_new_rl_target_replans_only_the_rl_set(run, tmp_path):
    run_dir, _, _ = run
    shutil.copytree(run_dir, tmp_path / run_dir.name)
    markers = markers_of(tmp_path / run_dir.name)
    curate(target="all", overrides=[f"runs_root={tmp_path}", f"run_name={run_dir.name}", "train.mode=none", "select.rl_target=50"])
    after = markers_of(tmp_path / run_dir.name)
    assert {path.parent.name for path in markers if after[path][0] != markers[path][0]} == {"rl"}  # + its quarantine
    assert published_rows(tmp_path / run_dir.name / "datasets" / "rl") == 50
