"""The per-problem round rules: rollouts stop only where selection's decisions can no longer change (every outcome
sequence gives the fixed-k decisions), and teachers are asked only for the chains of thought still missing."""

from __future__ import annotations

import functools
import itertools

import pytest

from pipeline.generate.rounds import RoundRules, SamplingConfig, completions, rollouts_to_request, settled, teachers_to_request
from pipeline.select.plan import ROLLOUT_DECISION_FIELDS, SelectConfig, rollout_decisions

DEFAULT = functools.partial(rollout_decisions, config=SelectConfig())
RIGHT, WRONG, NOT_COUNTED = "right", "wrong", "not_counted"


def adaptive(outcomes: tuple[str, ...], decide, min_rollouts: int, may_not_count: bool) -> tuple[int, int, int]:
    """Play the rule over one sequence of rollout outcomes (the order sampling would give): (correct, counted, sent)."""
    correct = counted = sent = 0
    while (more := rollouts_to_request(correct, counted, sent, len(outcomes), min_rollouts, decide, may_not_count)) > 0:
        for outcome in outcomes[sent : sent + more]:
            correct += outcome == RIGHT
            counted += outcome != NOT_COUNTED
        sent += more
    return correct, counted, sent


def fixed(outcomes: tuple[str, ...]) -> tuple[int, int]:
    return sum(o == RIGHT for o in outcomes), sum(o != NOT_COUNTED for o in outcomes)


CONFIGS = [
    SelectConfig(),
    SelectConfig(cold_start_max_pass_rate=0.5, cold_start_min_pass_rate=0.2, rl_min_rollouts=3),
    SelectConfig(rl_min_pass_rate=0.25, rl_max_pass_rate=0.75, cold_start_keep_unknown_difficulty=False, cold_start_min_rollouts=4),
]


@pytest.mark.parametrize("config", CONFIGS, ids=["default", "narrow-band", "rl-band"])
@pytest.mark.parametrize("k", [1, 2, 4, 6, 9])
@pytest.mark.parametrize("may_not_count", [False, True], ids=["truncated-wrong", "truncated-excluded"])
def test_every_outcome_sequence_gets_exactly_the_fixed_k_decisions(config, k, may_not_count):
    decide = functools.partial(rollout_decisions, config=config)
    kinds = (RIGHT, WRONG, NOT_COUNTED) if may_not_count else (RIGHT, WRONG)
    if len(kinds) ** k > 20_000:
        pytest.skip("exhaustive only where it is small")
    saved = 0
    for outcomes in itertools.product(kinds, repeat=k):
        correct, counted, sent = adaptive(outcomes, decide, min_rollouts=2, may_not_count=may_not_count)
        assert decide(correct, counted) == decide(*fixed(outcomes)), outcomes
        assert min(2, k) <= sent <= k
        saved += k - sent
    if k >= 4 and config == SelectConfig():
        assert saved > 0  # curtailment does stop early somewhere (a band needing 4 counted rollouts may need all)


def test_one_right_and_one_wrong_settle_the_rl_set_and_nobody_solving_it_takes_all_k():
    rl_only = functools.partial(rollout_decisions, config=SelectConfig(cold_start_max_pass_rate=1.0))
    assert settled(1, 2, 7, rl_only) and rollouts_to_request(1, 2, 2, 9, 2, rl_only) == 0  # 0 < p < 1 whatever comes
    # with the default band too (p <= 0.8 of 9), one right and one wrong leave p = 8/9 possible: a second wrong settles it
    assert not settled(1, 2, 7, DEFAULT) and settled(1, 3, 6, DEFAULT)
    assert not settled(0, 8, 1, DEFAULT)  # a ninth rollout could still solve it: 0 < p
    assert rollouts_to_request(0, 8, 8, 9, 2, DEFAULT) == 1
    assert rollouts_to_request(0, 9, 9, 9, 2, DEFAULT) == 0
    assert rollouts_to_request(2, 2, 2, 9, 2, rl_only) == 1  # all right so far: one wrong could settle the RL set
    assert rollouts_to_request(2, 2, 2, 9, 2, DEFAULT) == 2  # ... and the band only after two wrong (p <= 7/9)
    assert rollouts_to_request(0, 0, 0, 9, 2, DEFAULT) == 2  # the minimum first


def test_the_difficulty_band_is_settled_by_enough_wrong_replies():
    rl_settled = functools.partial(rollout_decisions, config=SelectConfig(rl_min_pass_rate=-1.0, rl_max_pass_rate=2.0))
    # k = 10, max 0.8: p <= 0.8 is certain once 2 of the 10 are wrong; with 8 right and 1 wrong it is open
    assert settled(3, 5, 5, rl_settled) and not settled(8, 9, 1, rl_settled)
    # a problem the policy finds easy (p > 0.8 certain): 9 right of 10 possible
    assert settled(9, 9, 1, rl_settled)


def test_completions_enumerate_every_end_state():
    assert sorted(completions(1, 2, 2, False)) == [(1, 4), (2, 4), (3, 4)]
    assert sorted(completions(1, 2, 1, True)) == [(1, 2), (1, 3), (2, 3)]


def test_teachers_are_asked_only_for_the_missing_verified_chains_of_thought():
    assert teachers_to_request(verified=0, sent=0, available=3, target=2) == 2
    assert teachers_to_request(verified=1, sent=2, available=3, target=2) == 1
    assert teachers_to_request(verified=1, sent=3, available=3, target=2) == 0  # out of samples
    assert teachers_to_request(verified=2, sent=2, available=8, target=2) == 0


def test_the_rounds_depend_on_exactly_the_select_settings_rollout_decisions_reads():
    base = SelectConfig()
    grid = [(c, n) for n in range(0, 10) for c in range(n + 1)]
    changed = {"cold_start_target": 7, "cold_start_max_per_problem": 5, "cold_start_balance": ["source"], "rl_target": 3,
               "rl_balance": ["domain"], "max_per_group": 4, "max_ratio_to_median": 3.0}  # fmt: skip
    assert set(changed) | set(ROLLOUT_DECISION_FIELDS) == set(SelectConfig.model_fields)
    for name, value in changed.items():
        other = base.model_copy(update={name: value})
        assert [rollout_decisions(c, n, other) for c, n in grid] == [rollout_decisions(c, n, base) for c, n in grid], name
        rules = RoundRules(SamplingConfig(target_verified=2), base), RoundRules(SamplingConfig(target_verified=2), other)
        assert rules[0].identity() == rules[1].identity(), name
    for name in ROLLOUT_DECISION_FIELDS:
        assert RoundRules(SamplingConfig(), base).identity() != RoundRules(SamplingConfig(), base.model_copy(update={name: 0.5})).identity()
    assert RoundRules(SamplingConfig(mode="fixed"), base).identity() == RoundRules(SamplingConfig(mode="fixed"), base.model_copy(update={"rl_min_rollouts": 5})).identity()
