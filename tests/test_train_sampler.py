"""The VAS sampler keeps TRL's repeat contract, equals RepeatSampler at lambda = 0, and resumes."""

from __future__ import annotations

from collections import Counter
from itertools import islice

import numpy as np
import pytest
from trl.trainer.utils import RepeatSampler

from pipeline.train.sampler import VASRepeatSampler

DATA = list(range(23))
SHAPE = dict(mini_repeat_count=3, batch_size=4, repeat_count=2)


def _uniform_weights() -> np.ndarray:
    return np.ones(len(DATA))


@pytest.mark.parametrize("shuffle", [True, False])
def test_lambda_zero_reproduces_repeat_sampler_exactly(shuffle):
    trl = RepeatSampler(DATA, **SHAPE, shuffle=shuffle, seed=7)
    vas = VASRepeatSampler(DATA, **SHAPE, shuffle=shuffle, seed=7, vas_lambda=0.0)
    for _ in range(3):  # successive epochs too: both advance one generator
        assert list(vas) == list(trl)
    assert len(vas) == len(trl)


def test_repeat_contract_holds_with_vas():
    weights = np.zeros(len(DATA))
    weights[5] = 1.0  # every weighted draw picks prompt 5
    sampler = VASRepeatSampler(DATA, **SHAPE, seed=0, vas_lambda=0.5, weights_fn=lambda: weights)
    indices = list(sampler)
    assert len(indices) == len(sampler) == len(RepeatSampler(DATA, **SHAPE))
    per_generation_batch = SHAPE["batch_size"] * SHAPE["mini_repeat_count"]
    blocks = [indices[i : i + per_generation_batch] for i in range(0, len(indices), per_generation_batch)]
    for first, second in zip(blocks[::2], blocks[1::2]):
        assert first == second  # each batch repeated repeat_count times
    for block in blocks:
        groups = [block[i : i + 3] for i in range(0, len(block), 3)]
        assert all(len(set(group)) == 1 for group in groups)  # each index mini_repeat_count times in a row
        assert [group[0] for group in groups][:2] == [5, 5]  # floor(0.5 * 4) = 2 weighted draws


def test_weighted_draws_follow_vps():
    weights = np.full(len(DATA), 1e-3)
    weights[[2, 9]] = [3.0, 1.0]
    sampler = VASRepeatSampler(DATA, mini_repeat_count=1, batch_size=4, seed=1, vas_lambda=1.0, weights_fn=lambda: weights)
    counts = Counter(index for _ in range(40) for index in sampler)
    assert counts[2] > 2 * counts[9] > 0
    assert sum(counts[i] for i in range(len(DATA)) if i not in (2, 9)) < 0.05 * sum(counts.values())


def test_same_seed_same_draws_and_different_seed_different():
    def indices(seed):
        sampler = VASRepeatSampler(DATA, **SHAPE, seed=seed, vas_lambda=0.5, weights_fn=_uniform_weights)
        return list(sampler) + list(sampler)

    assert indices(3) == indices(3)
    assert indices(3) != indices(4)


def test_sampler_resumes_mid_epoch_from_its_state():
    def fresh():
        return VASRepeatSampler(DATA, mini_repeat_count=1, batch_size=4, seed=11, vas_lambda=0.5, weights_fn=_uniform_weights)

    reference = fresh()
    full_run = [list(reference.batches()) for _ in range(2)]
    interrupted = fresh()
    list(interrupted.batches())  # epoch 0
    consumed = list(islice(interrupted.batches(), 2))  # two batches of epoch 1, then "crash"
    state = interrupted.state_dict()
    assert {key: state[key] for key in ("seed", "epoch", "batches_done")} == {"seed": 11, "epoch": 1, "batches_done": 2}
    assert [(epoch, batch) for epoch, batch, _ in state["draws"]] == [(1, 0), (1, 1)]  # epoch 0's are dropped
    resumed = fresh()
    resumed.load_state_dict(state)
    assert consumed + list(resumed.batches()) == full_run[1]
    assert resumed.epoch == 2


def test_resumed_sampler_replays_the_draws_made_before_the_checkpoint():
    # The weights move on between draws, as the score table does during training: one prompt takes all the mass.
    calls = []

    def moving_weights():
        calls.append(None)
        weights = np.full(len(DATA), 1e-6)
        weights[len(calls) % len(DATA)] = 1.0
        return weights

    interrupted = VASRepeatSampler(DATA, mini_repeat_count=1, batch_size=4, seed=5, vas_lambda=1.0, weights_fn=moving_weights)
    drawn_before = list(islice(interrupted.batches(), 3))  # batch 2 was fetched ahead of the checkpoint
    log = interrupted.draw_log()
    resumed = VASRepeatSampler(DATA, mini_repeat_count=1, batch_size=4, seed=5, vas_lambda=1.0, weights_fn=moving_weights)
    resumed.load_draw_log(log)
    assert list(islice(resumed.batches(), 3)) == drawn_before  # replayed, though the weights are others now
    unlogged = VASRepeatSampler(DATA, mini_repeat_count=1, batch_size=4, seed=5, vas_lambda=1.0, weights_fn=moving_weights)
    assert list(islice(unlogged.batches(), 3)) != drawn_before


def test_rejects_bad_weights_and_lambda():
    with pytest.raises(ValueError):
        VASRepeatSampler(DATA, 2, vas_lambda=1.5, weights_fn=_uniform_weights)
    bad = VASRepeatSampler(DATA, 2, batch_size=2, vas_lambda=1.0, weights_fn=lambda: np.ones(3))
    with pytest.raises(ValueError, match="one finite"):
        list(bad)


def test_draw_fn_replaces_the_proportional_draw_and_refills_follow_the_same_rule():
    calls = []

    def first_rows(count, seed):  # a stand-in rule: the `count` lowest rows, recording the seeds it was given
        calls.append(seed)
        return list(range(count))

    sampler = VASRepeatSampler(DATA, mini_repeat_count=1, batch_size=4, seed=2, vas_lambda=0.5, draw_fn=first_rows)
    batches = list(sampler.batches())
    assert all(batch[:2] == [0, 1] for batch in batches) and len(set(calls)) == len(batches)  # a seed per batch
    refill = sampler.refill(6, key=(3, 0))
    assert len(refill) == 6 and refill[:3] == [0, 1, 2]  # lambda share by the rule, the rest uniform
    assert len(set(refill[3:])) == 3 and refill == sampler.refill(6, key=(3, 0)) != sampler.refill(6, key=(3, 1))
