"""The verl adapter against the real verl 0.9.1 on CPU: its config, trainer, dataset, dataloader and data types.

Only two things are stood in for, both needing a cluster: the PPO pipeline behind `_step_once` (rollouts, rewards,
updates on GPU workers) and TransferQueue's storage, whose `kv_batch_get` here returns what verl's agent loop puts
(`list_of_dict_to_tensordict` of its per-rollout fields).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from pipeline.train.verl_adapter import (
    PLUGIN_MODULE,
    ROLLOUT_FIELDS,
    TRAINER_MODE,
    VerlRunConfig,
    VerlVASSampler,
    register_vas_trainer,
    to_verl_row,
    verl_overrides,
)

verl = pytest.importorskip("verl")  # written against 0.9.1 (requirements-verl.txt); another version runs them too

from hydra import compose, initialize_config_dir  # noqa: E402  (verl's dependencies: only where verl is)
from omegaconf import OmegaConf  # noqa: E402
from transfer_queue import KVBatchMeta  # noqa: E402
from verl.trainer.ppo.reward import get_custom_reward_fn  # noqa: E402
from verl.trainer.ppo.utils import create_rl_sampler, need_critic, need_reference_policy  # noqa: E402
from verl.trainer.ppo.v1 import PPOTrainer, get_trainer_cls  # noqa: E402
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer  # noqa: E402
from verl.utils.config import validate_config  # noqa: E402
from verl.utils.tensordict_utils import list_of_dict_to_tensordict  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ROWS = 6
INDEX_BASE = 100  # extra_info["index"] differs from the row number, as after any filtering


@pytest.fixture(scope="module")
def train_file(tmp_path_factory) -> str:
    rows = []
    for i in range(ROWS):
        row = {"problem_id": f"p{i}", "source": "gsm8k", "answer": str(i), "answer_type": "integer",
               "question_type": "free_form", "choices": None, "precision": None, "unit": None,
               "prompt": [{"role": "user", "content": f"What is {i} + 0?"}]}
        rows.append(to_verl_row(row, INDEX_BASE + i))
    path = tmp_path_factory.mktemp("verl") / "train.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return str(path)


@pytest.fixture(scope="module")
def composed(train_file):
    """verl's own ppo_trainer config with our overrides, as `python -m verl.trainer.main_ppo` would compose it."""
    run = VerlRunConfig(train_files=train_file, model_path="/models/policy", prompts_per_step=2, num_generations=2,
                        micro_batch_size_per_gpu=2, n_gpus_per_node=2,
                        vas={"vas_lambda": 0.5, "vps": {"ovs_weight": 0.7}})
    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    # verl subsamples 4 of the 6 rows: dataset positions and extra_info indices then differ.
    extra = ["data.train_max_samples=4", "data.seed=1"]
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return compose(config_name="ppo_trainer", overrides=verl_overrides(run) + extra)


@pytest.fixture
def trainer(composed):
    """The registered trainer class built as verl's TaskRunnerV1.run builds it, with its real dataloader."""
    config = copy.deepcopy(composed)
    OmegaConf.resolve(config)
    register_vas_trainer()
    trainer = get_trainer_cls(config.trainer.v1.trainer_mode)(config=config)
    trainer.tokenizer = trainer.processor = None  # _init_tokenizer loads the model's; RLHFDataset needs none
    trainer._init_dataloader()
    trainer.global_steps = 1
    return trainer


def test_overrides_compose_into_a_config_verl_validates(composed):
    assert composed.trainer.use_v1 and composed.trainer.v1.trainer_mode == TRAINER_MODE
    assert composed.data.vas == {"vas_lambda": 0.5, "vps": {"ovs_weight": 0.7}}
    assert composed.ray_kwargs.ray_init.runtime_env.env_vars == {"VERL_USE_EXTERNAL_MODULES": PLUGIN_MODULE}
    assert not OmegaConf.is_missing(composed.actor_rollout_ref.rollout, "name")
    validate_config(composed, use_reference_policy=need_reference_policy(composed), use_critic=need_critic(composed))
    # The reward as verl's reward loop loads it: by `pkg://` name, called with the row's extra_info.
    reward = get_custom_reward_fn(composed)
    assert reward(data_source="gsm8k", solution_str="<think>3+0</think> \\boxed{3}", ground_truth="3",
                  extra_info={"answer_type": "integer", "question_type": "free_form"}) == {"score": 1.1, "acc": 1.0}


def test_registered_trainer_keeps_verls_sync_semantics(trainer):
    assert register_vas_trainer() is register_vas_trainer()  # idempotent: every process imports the plugin
    assert type(trainer).__name__ == "VASPPOTrainerSync" and isinstance(trainer, PPOTrainer)
    assert trainer.trainer_mode == "sync" and type(trainer.replay_buffer) is ReplayBuffer  # not ReplayBufferAsync


def test_dataloader_draws_prompts_through_the_vas_sampler(trainer, composed):
    # verl itself would sample uniformly: create_rl_sampler knows no custom sampler.
    assert type(create_rl_sampler(composed.data, trainer.train_dataset)).__name__ == "RandomSampler"
    assert isinstance(trainer.train_dataloader.sampler, VerlVASSampler)
    state = trainer.vas_sampler.state
    dataset = trainer.train_dataset.dataframe
    assert len(state.prompt_ids) == 4 and state.prompt_ids == dataset["problem_id"]
    assert state.config.vas_lambda == 0.5 and state.config.vps.ovs_weight == 0.7  # data.vas, nested fields too
    rows = zip(dataset["extra_info"], dataset["problem_id"], strict=True)
    assert all(state.prompt_of_index[info["index"]] == prompt_id for info, prompt_id in rows)
    batch = trainer._next_train_batch()  # verl's own fetch: one train_batch_size chunk, a fresh uid per prompt
    indices, problem_ids = list(batch["index"]), list(batch["problem_id"])
    assert len(batch) == 2 and len(set(indices)) == 2
    assert [state.prompt_of_index[index] for index in indices] == problem_ids


def _rollout(index: int, response: list[int], acc: float | None, mask: list[int] | None = None) -> dict:
    """One rollout's TransferQueue fields as verl's agent loop writes them (rm_scores: the reward on the last token)."""
    mask = mask or [1] * len(response)  # 0: tokens the model did not write (tool output in a multi-turn rollout)
    rm_scores = torch.zeros(len(response))
    rm_scores[-1] = 1.0 if acc is None else acc + 0.1
    extra = {"reward_extra_info": {"score": float(rm_scores[-1]), "acc": acc}} if acc is not None else {}
    return {"uid": f"u{index}", "index": index, "responses": torch.tensor(response),
            "response_mask": torch.tensor(mask), "rm_scores": rm_scores, "extra_fields": extra}


def test_each_trained_batch_is_read_back_from_transfer_queue_into_the_table(trainer, monkeypatch):
    import transfer_queue

    a, b = (INDEX_BASE + 1, INDEX_BASE + 3)
    rollouts = [_rollout(a, [5, 6], 1.0), _rollout(b, [7, 7, 7], None),
                _rollout(a, [5, 9, 5, 9], 0.0, mask=[1, 1, 0, 0]), _rollout(b, [7, 7, 7], None)]
    keys = [f"k{i}" for i in range(len(rollouts))]
    padded = KVBatchMeta(partition_id="train", keys=keys + ["pad"], tags=[{}] * len(keys) + [{"is_padding": True}])
    monkeypatch.setattr(PPOTrainer, "_step_once", lambda self, metrics, timing_raw, size: padded)

    def kv_batch_get(keys, partition_id, select_fields):
        assert partition_id == "train" and set(select_fields) == set(ROLLOUT_FIELDS)
        return list_of_dict_to_tensordict([rollouts[int(key[1:])] for key in keys])  # "pad" is never asked for

    monkeypatch.setattr(transfer_queue, "kv_batch_get", kv_batch_get)
    metrics: dict = {}
    assert trainer._step_once(metrics, {}, 2) is padded
    assert metrics == {"vas/prompts_scored_in_batch": 2, "vas/prompts_scored": 2}
    scores = trainer.vas_sampler.state.table.scores
    assert set(scores) == {"p1", "p3"}
    assert scores["p1"].pass_rate == 0.5 and scores["p3"].pass_rate == 1.0  # p3: no acc, the rm_scores outcome
    assert scores["p1"].diversity == 1.0  # bigrams (5,6), (5,9): the masked tail (9,5), (5,9) is not the model's
    assert scores["p3"].diversity == 0.25  # 2 identical rollouts [7,7,7]: bigram (7,7) x 4 -> 1/4

    # The table travels in verl's dataloader checkpoint (data.pt): torch.save of the StatefulDataLoader state.
    saved = trainer.train_dataloader.state_dict()
    resumed = VerlVASSampler(trainer.train_dataset, trainer.config.data)
    loader = type(trainer.train_dataloader)(trainer.train_dataset, batch_size=2, sampler=resumed,
                                            collate_fn=trainer.train_dataloader.collate_fn)
    loader.load_state_dict(saved)
    next(iter(loader))
    assert resumed.state.table.scores == scores


def test_verl_imports_the_plugin_and_finds_the_trainer_by_mode(composed):
    """What the TaskRunner actor does, in a fresh process with the env var the overrides give every Ray process."""
    env = {**os.environ, **composed.ray_kwargs.ray_init.runtime_env.env_vars, "PYTHONPATH": str(REPO)}
    script = ("import verl\nfrom verl.trainer.ppo.v1 import get_trainer_cls\n"
              f"print(get_trainer_cls({composed.trainer.v1.trainer_mode!r}).__name__)")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "VASPPOTrainerSync"
