"""Training's configs are typed and strict (a misspelled key fails before any curation or training), and a training
stage is skipped only when it already ran on the same published data, start weights and settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.config_base import ConfigError
from pipeline.models.tiny import build_tiny_text_lm, train_tokenizer
from pipeline.train.chain import DONE_FILE
from pipeline.train.config import GRPOSettings, SFTSettings
from rl_rows import gsm8k_rl_rows, write_set

# One GRPO step on four prompts: enough to write a policy and a marker.
GRPO = {"num_generations": 2, "prompts_per_step": 2, "max_completion_length": 4}


def test_misspelled_training_keys_fail_when_the_config_loads():
    for key, hint in [
        ("train.options.grpo.num_generation=2", "train.options.grpo.num_generations"),
        ("train.options.sft.batch_sise=2", "train.options.sft.batch_size"),
        ("train.options.grpo.vas.vas_lamda=0.5", "train.options.grpo.vas.vas_lambda"),
        ("train.options.evaluate.problems_per_benchmrk=2", "train.options.evaluate.problems_per_benchmark"),
    ]:
        with pytest.raises(ConfigError, match=f"unknown key \\(did you mean {hint.replace('.', '[.]')}\\?\\)"):
            load_config(overrides=[key])
    options = load_config(overrides=["train.options.grpo.num_generations=2"]).train.options
    assert options.model_dump(exclude_unset=True) == {"grpo": {"num_generations": 2}}  # what curate passes on


def test_runtime_fields_stay_out_of_the_identity():
    assert "save_steps" not in SFTSettings(save_steps=5).identity() and "resume" not in GRPOSettings(resume=True).identity()
    assert GRPOSettings(save_steps=5).identity() == GRPOSettings().identity() != GRPOSettings(num_generations=8).identity()


def test_curate_stops_on_a_misspelled_training_key_before_any_work(tmp_path, prefect_harness):
    from flows.curate import curate

    with pytest.raises(ConfigError, match="did you mean train.options.grpo.max_completion_length"):
        curate(target="rl", overrides=[f"runs_root={tmp_path}", "run_name=typo", "train.options.grpo.max_completion_lenght=8"])
    assert not (tmp_path / "typo").exists()  # not even the resolved config was written


def test_train_flow_stops_on_a_misspelled_option_before_training(tmp_path, prefect_harness):
    from flows.train import train_flow

    with pytest.raises(ConfigError, match="did you mean sft.learning_rate"):
        train_flow(output_dir=str(tmp_path / "out"), cold_start_dir=str(tmp_path), options={"sft": {"learning_rat": 1e-3}})
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_republished_rl_set_retrains_and_a_new_save_steps_does_not(tmp_path, prefect_harness, data_root):
    from flows.train import train_flow

    model = build_tiny_text_lm(tmp_path / "base", tokenizer=train_tokenizer(vocab_size=1024, vision=False))
    rl = write_set(gsm8k_rl_rows(data_root, 4), tmp_path / "rl")
    out = tmp_path / "train"
    weights = out / "grpo-vas" / "model" / "model.safetensors"

    def train(**options) -> dict:
        grpo = {**GRPO, **options}
        kwargs = dict(output_dir=str(out), rl_dataset_dir=str(rl), stages=["grpo-vas"], model_path=str(model), max_steps=1)
        return train_flow(**kwargs, options={"grpo": grpo})["grpo-vas"]

    def marker_key() -> str:
        return json.loads((out / "grpo-vas" / DONE_FILE).read_text())["key"]

    assert train()["steps"] == 1
    trained_at, key = weights.stat().st_mtime_ns, marker_key()
    assert train(save_steps=1)["steps"] == 1  # a runtime field: the finished stage is skipped
    assert weights.stat().st_mtime_ns == trained_at and marker_key() == key
    write_set(gsm8k_rl_rows(data_root, 4, skip=4), rl)  # another RL set published to the same folder
    assert train()["steps"] == 1 and weights.stat().st_mtime_ns != trained_at and marker_key() != key
    retrained_at = weights.stat().st_mtime_ns
    train(num_generations=4)  # a setting that changes the result retrains too
    assert weights.stat().st_mtime_ns != retrained_at
