"""GRPO + VAS really trains (tiny text model on the curated GSM8K RL set, tiny Qwen2.5-VL on TabMWP tables),
checkpoints and restores its VPS state, and the train flow validates a real RL set."""

from __future__ import annotations

import shutil
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from trl.trainer.utils import RepeatSampler

from pipeline.models.tiny import build_tiny_text_lm, train_tokenizer
from pipeline.train.dataset import RLDatasetError, load_rl_dataset, load_validated_rl_dataset
from pipeline.train.run import build_trainer, run_training
from pipeline.train.config import TrainConfig, VASConfig
from pipeline.train.trl_trainer import SAMPLER_DRAWS_FILE, VAS_HISTORY_FILE, VASGRPOTrainer, VASHistory
from pipeline.train.vas import VPS_STATE_FILE, load_score_table
from rl_rows import tabmwp_rl_rows, write_set

SMOKE = dict(max_steps=2, max_rows=8, num_generations=2, prompts_per_step=2, max_completion_length=8)


@pytest.fixture(scope="session")
def curated_rl_dir(curated_sets) -> Path:
    return curated_sets["rl"]


@pytest.fixture(scope="session")
def tabmwp_rl_dir(tmp_path_factory, data_root) -> Path:
    """A few RL rows in the published columns, from real TabMWP problems and their table images."""
    return write_set(tabmwp_rl_rows(data_root, 6), tmp_path_factory.mktemp("tabmwp-rl"))


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory) -> Path:
    return build_tiny_text_lm(tmp_path_factory.mktemp("tiny-text"), tokenizer=train_tokenizer(vocab_size=1024, vision=False))


def test_curated_rl_set_is_trl_ready(curated_rl_dir):
    dataset, report = load_validated_rl_dataset(curated_rl_dir)
    assert report.rows == len(dataset) > 100 and 0 < report.rows_with_images < report.rows  # diagrams and text
    assert {"answer", "answer_type", "question_type", "choices", "precision", "unit"} <= set(dataset.column_names)


def test_validation_names_what_is_wrong(tmp_path, curated_rl_dir):
    rows = load_rl_dataset(curated_rl_dir).select(range(4)).to_list()
    rows[1]["prompt"] = [{"role": "assistant", "content": "hi"}]
    rows[2]["answer"] = " "
    bad = tmp_path / "bad"
    datasets.Dataset.from_list(rows, features=load_rl_dataset(curated_rl_dir).features).to_parquet(
        str(bad / "data" / "train-00000-of-00001.parquet")
    )
    with pytest.raises(RLDatasetError, match="prompt roles") as error:
        load_validated_rl_dataset(bad)
    assert "no gold answer" in str(error.value)


def test_grpo_vas_trains_a_tiny_text_model(tmp_path, curated_rl_dir, tiny_text_model):
    config = TrainConfig(rl_dataset_dir=curated_rl_dir, output_dir=tmp_path, model_path=tiny_text_model, **SMOKE)
    result = run_training(config)
    assert result.steps == 2
    assert {"grad_norm", "frac_reward_zero_std", "vas/frac_accuracy_zero_variance", "rewards/accuracy/mean"} <= set(
        result.final_metrics
    )
    table = load_score_table(tmp_path / VPS_STATE_FILE)
    assert sum(score.observations for score in table.scores.values()) == 2 * 2  # 2 steps x 2 prompt groups
    for name in ("vps_histogram.png", "vps_transitions.png", "zero_variance.png", "metrics.jsonl"):
        assert (tmp_path / name).stat().st_size > 0
    assert 0 < result.vas_seconds < result.train_seconds


def test_grpo_vas_trains_a_tiny_qwen2_5_vl_on_table_images(tmp_path, tabmwp_rl_dir):
    config = TrainConfig(rl_dataset_dir=tabmwp_rl_dir, output_dir=tmp_path, **SMOKE)  # builds the tiny VL model
    result = run_training(config)
    assert result.rows_with_images == 6 and result.steps == 2
    assert Path(result.model_path).name == "tiny-vl"
    assert result.final_metrics["vas/scored_prompts"] >= 2


def _trainer(curated_rl_dir, model, output_dir, vas_lambda=0.5, **overrides) -> VASGRPOTrainer:
    config = TrainConfig(
        rl_dataset_dir=curated_rl_dir, output_dir=output_dir, model_path=model, vas=VASConfig(vas_lambda=vas_lambda), **{**SMOKE, **overrides}
    )
    return build_trainer(config, load_rl_dataset(curated_rl_dir).select(range(config.max_rows)), model)


def test_lambda_zero_trainer_uses_trl_uniform_order(tmp_path, curated_rl_dir, tiny_text_model):
    trainer = _trainer(curated_rl_dir, tiny_text_model, tmp_path, vas_lambda=0.0)
    ours = trainer._get_train_sampler()
    reference = RepeatSampler(trainer.train_dataset, ours.mini_repeat_count, ours.batch_size, ours.repeat_count, seed=trainer.args.seed)
    assert list(ours) == list(reference)


def test_train_flow_validates_a_real_rl_set(tmp_path, curated_rl_dir):
    from flows.train import train_flow

    result = train_flow(output_dir=str(tmp_path), rl_dataset_dir=str(curated_rl_dir), stages=["grpo-vas"], max_steps=0)
    assert result["grpo-vas"]["rows"] == len(load_rl_dataset(curated_rl_dir)) and result["grpo-vas"]["steps"] == 0


def test_scoring_pass_rolls_out_every_prompt_before_training(tmp_path, curated_rl_dir, tiny_text_model):
    trainer = _trainer(curated_rl_dir, tiny_text_model, tmp_path, max_steps=1, max_rows=4)
    trainer.vas = VASConfig(vas_lambda=0.5, scoring_rollouts=3)
    trainer.score_all_prompts()
    assert set(trainer.score_table.scores) == set(trainer.prompt_ids)
    assert all(score.observations == 1 and score.diversity is not None for score in trainer.score_table.scores.values())
    assert not trainer.vas_history.zero_variance_fraction  # scoring rollouts are not training steps
    assert trainer.num_generations_eval != 3 and not trainer._metrics["eval"]


def test_resume_from_checkpoint_continues_exactly_as_the_uninterrupted_run(tmp_path, curated_rl_dir, tiny_text_model):
    # lambda = 1: every prompt is a weighted draw. The dataloader fetched step 1's batch before step 0's scores
    # came in; a resumed run that redrew it with the restored (newer) weights trains other prompts in step 1.
    def config(output_dir: Path, resume: bool) -> TrainConfig:
        return TrainConfig(
            rl_dataset_dir=curated_rl_dir, output_dir=output_dir, model_path=tiny_text_model, save_steps=1,
            resume=resume, vas=VASConfig(vas_lambda=1.0), **SMOKE,
        )

    straight = tmp_path / "straight"
    run_training(config(straight, resume=False))
    checkpoint = straight / "checkpoint-1"
    assert {VPS_STATE_FILE, VAS_HISTORY_FILE, SAMPLER_DRAWS_FILE} <= {path.name for path in checkpoint.iterdir()}
    interrupted = tmp_path / "interrupted"  # as if killed during step 2: only checkpoint-1 on disk
    shutil.copytree(checkpoint, interrupted / checkpoint.name)
    resumed = run_training(config(interrupted, resume=True))
    assert resumed.steps == 2
    # Same table (scores, observations: 2 steps x 2 groups) and history as the run that was never stopped.
    assert (interrupted / VPS_STATE_FILE).read_text() == (straight / VPS_STATE_FILE).read_text()
    assert sum(s.observations for s in load_score_table(interrupted / VPS_STATE_FILE).scores.values()) == 4
    histories = [VASHistory.load(folder / VAS_HISTORY_FILE) for folder in (interrupted, straight)]
    assert histories[0].zero_variance_fraction == histories[1].zero_variance_fraction
    assert histories[0].vps_snapshots == histories[1].vps_snapshots


def test_two_sets_published_to_folders_of_the_same_name_load_as_themselves(tmp_path, monkeypatch):
    """The RL loader keys its cache by the files, so a set published to a folder of the same name is read as itself."""
    from pipeline.paths import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    for run, rows in (("a", 2), ("b", 3)):
        folder = tmp_path / run / "rl" / "data"
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"problem_id": [f"{run}{i}" for i in range(rows)]}), folder / "train-00000-of-00001.parquet")
    assert load_rl_dataset(tmp_path / "a" / "rl")["problem_id"] == ["a0", "a1"]
    assert load_rl_dataset(tmp_path / "b" / "rl")["problem_id"] == ["b0", "b1", "b2"]
