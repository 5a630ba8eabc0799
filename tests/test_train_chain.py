"""The training chain on the sets `curate` makes from the shared data: cold-start SFT (tiny text model and tiny
Qwen2.5-VL with the real table images) -> GRPO + VAS from the SFT weights -> evaluation on MathVision testmini."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForCausalLM

from pipeline.evaluate.benchmarks import BenchmarkConfig
from pipeline.evaluate.report import accuracy_of, bootstrap_interval
from pipeline.evaluate.stage import EvalModel, EvaluateConfig, run_evaluation
from pipeline.generate.base import SamplingParams
from pipeline.generate.factory import BackendConfig
from pipeline.generate.openai_server import Endpoint, OpenAIServerConfig
from pipeline.generate.server import VLLMServer
from pipeline.models.tiny import build_tiny_qwen2_5_vl, build_tiny_text_lm, train_tokenizer
from pipeline.paths import REPO_ROOT
from pipeline.train.config import TrainConfig
from pipeline.train.dataset import load_rl_dataset, validate_rl_dataset
from pipeline.train.run import build_trainer, run_training, start_model
from pipeline.train.sft import SFTStageConfig, build_sft_trainer, run_sft

VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"
# A repeated batch: the first two rows of the stream, shuffle off, a learning rate that moves a tiny model fast.
REPEATED = dict(max_rows=2, batch_size=2, shuffle_buffer=0, learning_rate=1e-3, lr_scheduler_type="constant", max_length=768)


@pytest.fixture(scope="module")
def text_base(tmp_path_factory) -> Path:
    return build_tiny_text_lm(tmp_path_factory.mktemp("base-text"), tokenizer=train_tokenizer(vocab_size=1024, vision=False))


@pytest.fixture(scope="module")
def sft_text(tmp_path_factory, curated_sets, text_base) -> Path:
    out = tmp_path_factory.mktemp("sft-text")
    config = SFTStageConfig(cold_start_dir=curated_sets["cold_start"], output_dir=out, model_path=text_base, max_steps=5, **REPEATED)
    result = run_sft(config)
    assert result.steps == 5
    return out


def _weights(model) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_sft_on_the_cold_start_set_learns_the_assistant_turn_only(curated_sets, sft_text, text_base):
    summary = json.loads((sft_text / "sft_summary.json").read_text())
    losses = summary["losses"]
    assert len(losses) == 5 and all(b < a for a, b in zip(losses, losses[1:])), losses
    trained = AutoModelForCausalLM.from_pretrained(sft_text)  # the output folder is a model
    base = AutoModelForCausalLM.from_pretrained(text_base)
    assert any(not torch.equal(a, b) for a, b in zip(trained.state_dict().values(), base.state_dict().values()))
    # The loss mask: every supervised token is the teacher's answer, none of the system/user prompt.
    trainer, _ = build_sft_trainer(SFTStageConfig(cold_start_dir=curated_sets["cold_start"], output_dir=sft_text / "probe", model_path=text_base, **REPEATED))
    batch = next(iter(trainer.get_train_dataloader()))
    row = next(iter(load_rl_dataset(curated_sets["cold_start"])))  # published order = the stream's first row
    supervised = batch["labels"][0][batch["labels"][0] != -100]
    text = trainer.processing_class.decode(supervised)
    assert row["messages"][-1]["content"][:200] in text and row["messages"][1]["content"][:80] not in text
    assert 0 < len(supervised) < int(batch["attention_mask"][0].sum())


def test_sft_trains_a_tiny_qwen2_5_vl_on_the_table_images(tmp_path, curated_sets):
    base = build_tiny_qwen2_5_vl(tmp_path / "base-vl", tokenizer=train_tokenizer(vocab_size=1024, vision=True))
    config = SFTStageConfig(cold_start_dir=curated_sets["cold_start"], output_dir=tmp_path / "sft", model_path=base, max_steps=4, **REPEATED)
    trainer, _ = build_sft_trainer(config)
    batch = next(iter(trainer.get_train_dataloader()))
    image_token = trainer.processing_class.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert batch["pixel_values"].shape[0] > 0 and len(batch["image_grid_thw"]) == 2  # one diagram per row
    assert ((batch["input_ids"] == image_token) & (batch["labels"] != -100)).sum() == 0  # image tokens not supervised
    result = run_sft(config)
    assert result.steps == 4 and all(b < a for a, b in zip(result.losses, result.losses[1:])), result.losses
    assert (tmp_path / "sft" / "processor_config.json").exists() and (tmp_path / "sft" / "model.safetensors").exists()
    # GRPO + VAS from this VL checkpoint on the curated RL set's diagrams.
    rl = load_rl_dataset(curated_sets["rl"])
    with_images = [i for i, images in enumerate(rl["images"]) if images][:4]
    rl.select(with_images).to_parquet(str(tmp_path / "rl" / "data" / "train-00000-of-00001.parquet"))
    grpo = TrainConfig(
        rl_dataset_dir=tmp_path / "rl", output_dir=tmp_path / "grpo", model_path=base, sft_model_dir=tmp_path / "sft",
        max_steps=1, num_generations=2, prompts_per_step=2, max_completion_length=8,
    )
    trained = run_training(grpo)
    assert trained.rows_with_images == 4 and trained.steps == 1 and trained.model_path == str(tmp_path / "sft")
    assert trained.final_metrics["vas/scored_prompts"] >= 2


@pytest.mark.slow
def test_sft_resumes_exactly_from_a_checkpoint(tmp_path, curated_sets, text_base):
    def config(out: Path) -> SFTStageConfig:
        return SFTStageConfig(
            cold_start_dir=curated_sets["cold_start"], output_dir=out, model_path=text_base, max_steps=4, save_steps=2,
            resume=True, **{**REPEATED, "max_rows": 6, "shuffle_buffer": 4},
        )

    run_sft(config(tmp_path / "straight"))
    shutil.copytree(tmp_path / "straight" / "checkpoint-2", tmp_path / "resumed" / "checkpoint-2")  # killed in step 3
    resumed = run_sft(config(tmp_path / "resumed"))
    assert resumed.steps == 4
    straight = AutoModelForCausalLM.from_pretrained(tmp_path / "straight").state_dict()
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "resumed").state_dict()
    assert all(torch.equal(straight[name], again[name]) for name in straight)


def test_grpo_vas_starts_from_the_sft_weights_with_seeded_scores(tmp_path, curated_sets, sft_text, text_base):
    rl = curated_sets["rl"]
    config = TrainConfig(
        rl_dataset_dir=rl, output_dir=tmp_path, model_path=text_base, sft_model_dir=sft_text, max_steps=2, max_rows=8,
        num_generations=2, prompts_per_step=2, max_completion_length=8,
    )
    dataset = load_rl_dataset(rl).select(range(8))
    assert start_model(config, validate_rl_dataset(dataset)) == sft_text
    trainer = build_trainer(config, dataset, sft_text)
    sft_weights = _weights(AutoModelForCausalLM.from_pretrained(sft_text))
    start = _weights(trainer.model)
    assert start.keys() == sft_weights.keys() and all(torch.equal(start[k], sft_weights[k]) for k in start)
    # VAS scores seeded from the RL set's rollout counts (their posterior mean): no scoring rollouts before step one.
    seeded = {pid: trainer.score_table.scores[pid] for pid in trainer.prompt_ids}
    for pid, right, rollouts in zip(dataset["problem_id"], dataset["num_correct"], dataset["num_rollouts"]):
        assert seeded[pid].pass_rate == pytest.approx((right + 1) / (rollouts + 2))
    trainer.close_rewards()
    result = run_training(config)
    assert result.model_path == str(sft_text) and result.steps == 2
    assert (Path(result.trained_model_dir) / "model.safetensors").exists()
    assert TrainConfig(rl_dataset_dir=rl, output_dir=tmp_path, start_from="base", sft_model_dir=sft_text, model_path=text_base).start_from == "base"


def _assert_counts_add_up(report: dict, problems: int, samples: int) -> None:
    counts = report["counts"]
    assert counts["problems"] == problems and counts["samples"] == samples
    assert counts["correct"] + counts["wrong"] + counts["failed"] == samples
    assert sum(s["problems"] for s in report["by_subject"].values()) == problems
    assert sum(s["samples"] for s in report["by_level"].values()) == samples
    assert sum(s["correct"] for s in report["by_subject"].values()) == counts["correct"]
    overall = report["overall"]
    assert overall["ci_low"] <= overall["accuracy"] <= overall["ci_high"]


def test_evaluate_scores_checkpoints_on_mathvision_through_transformers(tmp_path, data_root, text_base, sft_text):
    config = EvaluateConfig(
        benchmarks=[BenchmarkConfig(limit=6)],  # MathVision testmini, with its diagrams
        models=[EvalModel(name="base", path=str(text_base)), EvalModel(name="sft", path=str(sft_text))],
        samples=2,
        sampling=SamplingParams(temperature=1.0, max_tokens=12, seed=3),
        shard_size=4,
    )
    reports = run_evaluation(config, tmp_path, data_root)["mathvision_testmini"]
    for name in ("base", "sft"):
        _assert_counts_add_up(reports[name], problems=6, samples=12)
        assert reports[name]["counts"]["images_dropped"] == 12 and reports[name]["counts"]["failed"] == 0  # text-only models
    folder = tmp_path / "reports" / "mathvision_testmini"
    document = json.loads((folder / "report.json").read_text())
    assert document["interval"].startswith("percentile bootstrap") and set(document["models"]) == {"base", "sft"}
    table = (folder / "comparison.md").read_text()
    assert "| base | 6 |" in table and "| sft | 6 |" in table
    assert (folder / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    # A rerun finds every shard finished: the reports come back without generating again.
    again = run_evaluation(config.model_copy(update={"backend": config.backend.model_copy(update={"kind": "transformers"})}), tmp_path, data_root)
    assert again["mathvision_testmini"]["sft"]["counts"] == reports["sft"]["counts"]


def test_accuracy_math_on_known_values():
    correct = np.array([1, 1, 0, 0, 1, 0], dtype=bool)  # problems 0 (2/2), 1 (0/2), 2 (1/2)
    problems = np.array([0, 0, 1, 1, 2, 2])
    accuracy = accuracy_of(correct, problems, confidence=0.95, resamples=500, seed=0)
    assert (accuracy.problems, accuracy.samples, accuracy.correct) == (3, 6, 3) and accuracy.accuracy == pytest.approx(50.0)
    low, high = bootstrap_interval(np.full(200, 0.3), 0.95, 200, seed=1)
    assert low == pytest.approx(0.3) and high == pytest.approx(0.3)
    low, high = bootstrap_interval(np.r_[np.ones(30), np.zeros(70)], 0.95, 2000, seed=1)
    assert 0.2 < low < 0.3 < high < 0.4  # binomial: 0.3 +- 1.96 * 0.046


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.skipif(not VLLM_PYTHON.exists(), reason="no .venv-vllm: run `make install-vllm`")
def test_evaluate_scores_the_sft_checkpoint_through_a_real_vllm_server(tmp_path, data_root, sft_text):
    with VLLMServer(sft_text, served_name="sft", max_model_len=1024, log_path=tmp_path / "vllm.log") as server:
        config = EvaluateConfig(
            benchmarks=[BenchmarkConfig(limit=8)],
            models=[EvalModel(name="sft", path="sft", vision=False)],  # the served name; a text model
            backend=BackendConfig(kind="openai", openai=OpenAIServerConfig(endpoints=[Endpoint(url=server.base_url)])),
            samples=2,
            sampling=SamplingParams(temperature=1.0, max_tokens=16, seed=5),
        )
        reports = run_evaluation(config, tmp_path / "run", data_root)["mathvision_testmini"]
        assert server.process.poll() is None, (tmp_path / "vllm.log").read_text()[-3000:]
    _assert_counts_add_up(reports["sft"], problems=8, samples=16)
    assert reports["sft"]["counts"]["failed"] == 0 and reports["sft"]["counts"]["images_dropped"] == 16
    rows = pq.read_table(tmp_path / "run" / "evaluations" / "mathvision_testmini-00000.parquet").to_pylist()
    assert len(rows) == 16 and all(row["response"] for row in rows)
    assert {row["reason"] for row in rows} <= {"mismatch", "no_answer", "exact", "numeric", "choice", "math_verify", "answer_too_long"}


@pytest.mark.slow
def test_train_flow_chains_sft_grpo_and_evaluate_and_skips_finished_stages(tmp_path, curated_sets, text_base, data_root):
    from flows.train import train_flow

    kwargs = dict(
        output_dir=str(tmp_path), cold_start_dir=str(curated_sets["cold_start"]), rl_dataset_dir=str(curated_sets["rl"]),
        model_path=str(text_base), sft_steps=2, max_steps=1, max_rows=4,
        options={
            "sft": {"batch_size": 2, "max_length": 512},
            "grpo": {"num_generations": 2, "prompts_per_step": 2, "max_completion_length": 8},
            "evaluate": {"benchmarks": [{"limit": 2}], "sampling": {"temperature": 0.0, "max_tokens": 8, "seed": 0}},
        },
    )
    result = train_flow(**kwargs)
    assert result["sft"]["steps"] == 2 and result["grpo-vas"]["steps"] == 1
    assert result["grpo-vas"]["model_path"] == str(tmp_path / "sft")  # GRPO started from the SFT output
    assert list(result["evaluate"]["mathvision_testmini"]) == ["base", "sft", "grpo-vas"]
    table = (tmp_path / "evaluate" / "reports" / "mathvision_testmini" / "comparison.md").read_text()
    assert [line.split("|")[1].strip() for line in table.splitlines()[6:]] == ["base", "sft", "grpo-vas"]
    # Rerun: both training stages are found finished with the same config, evaluation shards by their markers.
    sft_weights = (tmp_path / "sft" / "model.safetensors").read_bytes()
    again = train_flow(**kwargs)
    assert again["sft"] == result["sft"] and (tmp_path / "sft" / "model.safetensors").read_bytes() == sft_weights
    assert again["evaluate"]["mathvision_testmini"]["sft"]["counts"] == result["evaluate"]["mathvision_testmini"]["sft"]["counts"]
    only_evaluate = train_flow(**{**kwargs, "stages": ["evaluate"]})
    assert set(only_evaluate) == {"evaluate"}


@pytest.mark.slow
def test_the_readme_train_command_on_the_default_sets(default_run, curated_sets):
    """`make train` as the README gives it, on the default run's mixed sets (diagram and text rows): a tiny
    Qwen2.5-VL model, 2 SFT and 2 GRPO + VAS steps, then base, SFT and GRPO + VAS on both default benchmarks."""
    from flows.train import main

    run_dir = default_run[0]
    # Under `make test` this is a sub-make, which would print "Entering/Leaving directory" lines into the recipe.
    outer_make = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"}
    make = subprocess.run(
        ["make", "-n", "--no-print-directory", "train", f"RUN={run_dir.name}", "SFT_STEPS=2", "STEPS=2",
         "EVAL_PROBLEMS=2", "EVAL_TOKENS=8"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        env={key: value for key, value in os.environ.items() if key not in outer_make},
    )
    command = shlex.split(make.stdout.replace("\\\n", " "))
    argv = [arg.replace(f"runs/{run_dir.name}", str(run_dir)) for arg in command[command.index("flows.train") + 1 :]]
    main(argv)
    out = run_dir / "train"
    sft, grpo = (json.loads((out / folder).read_text()) for folder in ("sft/sft_summary.json", "grpo-vas/summary.json"))
    assert sft["steps"] == 2 and Path(sft["base_model"]).name == "tiny-vl"
    rl = load_rl_dataset(curated_sets["rl"])
    with_images = sum(bool(images) for images in rl["images"])
    assert grpo["steps"] == 2 and grpo["rows"] == len(rl) and 0 < grpo["rows_with_images"] == with_images < len(rl)
    table = (out / "evaluate" / "reports" / "comparison.md").read_text()
    rows = [line.split("|")[1:-1] for line in table.splitlines()[4:]]
    benchmarks, models = ["mathvision_testmini", "logicvista"], ["base", "sft", "grpo-vas"]
    assert [(row[0].strip(), row[1].strip()) for row in rows] == [(b, m) for b in benchmarks for m in models]
    assert all(row[2].strip() == "2" and row[5].strip() == "0" for row in rows)  # 2 problems each, no failed generation
    assert all(row[6].strip().startswith("first 2 of ") for row in rows)  # says it is a subset
    for benchmark in benchmarks:
        report = json.loads((out / "evaluate" / "reports" / benchmark / "report.json").read_text())
        assert all(model["counts"]["images_dropped"] == 0 for model in report["models"].values())  # a VL model sees them


@pytest.mark.gpu
def test_step_times_on_a_gpu_with_trl_vllm_colocate(tmp_path, curated_sets):
    pytest.importorskip("vllm")
    from benchmarks.bench_train_gpu import step_times

    times = step_times(curated_sets["cold_start"], curated_sets["rl"], steps=3, folder=tmp_path)
    assert all(seconds > 0 for seconds in times.values())
