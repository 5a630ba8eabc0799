"""Config loading: the embedded default, YAML files, overrides; unknown keys fail naming the nearest spelling."""

from __future__ import annotations

import sys

import pytest
import yaml

from pipeline.config import load_config, save_resolved
from pipeline.config_base import ConfigError, StrictConfig, identity, runtime, validate_config
from pipeline.train.config import TrainConfig


@pytest.mark.parametrize(
    "override, named, suggestion",
    [
        ("ingest.shard_sise=5", "ingest.shard_sise", "ingest.shard_size"),
        ("ingest.images.max_sid=64", "ingest.images.max_sid", "ingest.images.max_side"),
        ("verify.quality.requre_think=true", "verify.quality.requre_think", "verify.quality.require_think"),
        ("backend.openai.timeout=3", "backend.openai.timeout", "backend.openai.timeout_s"),
        ("sede=3", "sede", "seed"),
    ],
)
def test_a_misspelled_key_at_any_depth_names_itself_and_its_nearest_spelling(override, named, suggestion):
    with pytest.raises(ConfigError) as error:
        load_config(overrides=[override])
    assert f"{named}: unknown key (did you mean {suggestion}?)" in str(error.value)


def test_keys_inside_lists_and_yaml_files_are_checked_too(tmp_path):
    path = tmp_path / "run.yaml"
    source = {"name": "g", "format": "gsm8k", "path": "gsm8k/test.jsonl", "domain": "d", "limt": 3}
    path.write_text(yaml.safe_dump({"sources": [source], "decontam": {"benchmarks": [{"name": "b", "format": "mathvista", "path": "p", "limitt": 1}]}}))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "sources[0].limt: unknown key (did you mean sources[0].limit?)" in message
    assert "decontam.benchmarks[0].limitt: unknown key (did you mean decontam.benchmarks[0].limit?)" in message


def test_train_config_names_unknown_keys_of_its_dataclasses():
    tree = {"rl_dataset_dir": "a", "output_dir": "b", "vas": {"vas_lamda": 1.0}}
    with pytest.raises(ConfigError, match=r"vas\.vas_lamda: unknown key \(did you mean vas\.vas_lambda\?\)"):
        validate_config(TrainConfig, tree)


def test_a_bad_config_fails_the_flow_before_any_work(tmp_path, monkeypatch):
    from flows import curate

    monkeypatch.setattr(sys, "argv", ["curate", f"runs_root={tmp_path}", "run_name=typo", "dedupe.num_prem=64"])
    with pytest.raises(ConfigError, match="dedupe.num_prem"):
        curate.main()
    assert not (tmp_path / "typo").exists()


def test_yaml_then_overrides_win_and_the_resolved_config_reloads(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"run_name": "from-yaml", "seed": 7, "ingest": {"shard_size": 50}}))
    config = load_config(path, [f"runs_root={tmp_path}", "ingest.max_images=2", "select.rl_target=10"])
    assert (config.run_name, config.seed, config.ingest.shard_size, config.ingest.max_images) == ("from-yaml", 7, 50, 2)
    assert config.select.rl_target == 10 and len(config.sources) == 2  # the embedded default's sources stay
    with pytest.raises(ValueError, match="not key=value"):
        load_config(overrides=["seed"])
    resolved = load_config(save_resolved(config))
    assert resolved == config


class Inner(StrictConfig):
    size: int = 3
    threads: int = runtime(4)


class Outer(StrictConfig):
    inner: Inner = Inner()
    items: list[Inner] = [Inner()]
    batch: int = runtime(8)


def test_identity_leaves_out_runtime_fields_at_any_depth():
    assert identity(Outer()) == {"inner": {"size": 3}, "items": [{"size": 3}]}
    assert Outer(batch=1, inner=Inner(threads=9)).identity() == Outer().identity()
    assert Outer(inner=Inner(size=4)).identity() != Outer().identity()


def test_runtime_knobs_are_not_in_stage_identities():
    config = load_config()
    tuned = load_config(overrides=["verify.workers=8", "dedupe.workers=4", "generate.batch_size=3", "diversity.batch_size=7"])
    for name in ("verify", "dedupe", "generate", "diversity"):
        assert getattr(tuned, name).identity() == getattr(config, name).identity()
    assert load_config(overrides=["verify.timeout_s=1"]).verify.identity() != config.verify.identity()  # decides verdicts


def test_each_selection_plan_depends_only_on_its_own_settings():
    config = load_config()
    retargeted = load_config(overrides=["select.rl_target=5"])
    assert retargeted.select.set_identity("cold_start") == config.select.set_identity("cold_start")
    assert retargeted.select.set_identity("rl") != config.select.set_identity("rl")
    capped = load_config(overrides=["select.max_per_group=3"])  # shared by both sets
    assert capped.select.set_identity("cold_start") != config.select.set_identity("cold_start")
