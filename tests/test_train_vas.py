"""VAS math with hand-computed values: OVS, TDS (distinct-n, self-BLEU), min-max, VPS, the score table."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from pipeline.train.vas import (
    DiversityConfig,
    PosteriorConfig,
    PosteriorScoreTable,
    VPSConfig,
    VPSScoreTable,
    distinct_n,
    expected_informative_probability,
    informative_probability,
    load_score_table,
    group_rollouts,
    minmax_normalise,
    outcome_variance,
    self_bleu_diversity,
    trajectory_diversity,
    variance_promotion_scores,
)

IDENTICAL = [[1, 2, 3, 4]] * 4
DIVERSE = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]


@pytest.mark.parametrize(
    ("rewards", "expected"),
    [
        ([1, 1, 1, 1], 0.0),  # all correct: no advantage signal
        ([0, 0, 0, 0], 0.0),  # all wrong
        ([1, 0, 1, 0], 0.25),  # p = 1/2: the maximum
        ([1, 0, 0, 0], 0.1875),  # p = 1/4: 1/4 * 3/4
        ([0.5, 0.5], 0.25),  # graded rewards: p = 0.5
        ([], 0.0),
    ],
)
def test_outcome_variance(rewards, expected):
    assert outcome_variance(rewards) == pytest.approx(expected)


def test_distinct_n_hand_values():
    # 4 identical rollouts of 3 bigrams: 3 distinct of 12 -> 1/4 = 1/G
    assert distinct_n(IDENTICAL, 2) == pytest.approx(0.25)
    assert distinct_n(DIVERSE, 2) == pytest.approx(1.0)
    # [1,2,1,2] and [2,1,2,1]: bigrams (1,2),(2,1),(1,2) and (2,1),(1,2),(2,1) -> 2 distinct of 6
    assert distinct_n([[1, 2, 1, 2], [2, 1, 2, 1]], 2) == pytest.approx(2 / 6)
    assert distinct_n([[1, 2, 1, 2], [2, 1, 2, 1]], 1) == pytest.approx(2 / 8)
    assert distinct_n([[1], [2]], 2) == 0.0  # no bigrams at all


def test_self_bleu_diversity_hand_values():
    assert self_bleu_diversity(IDENTICAL) == pytest.approx(0.0)  # every BLEU is 1
    # Disjoint rollouts: every precision is the smoothed 0.1/total -> BLEU = (0.1/4 * 0.1/3 * 0.1/2 * 0.1/1)^(1/4)
    bleu = (0.1 / 4 * 0.1 / 3 * 0.1 / 2 * 0.1 / 1) ** 0.25
    assert self_bleu_diversity(DIVERSE) == pytest.approx(1 - bleu)
    # Two rollouts sharing half their unigrams, max_n = 1: precision 2/4 each way, equal lengths -> BLEU 0.5
    assert self_bleu_diversity([[1, 2, 3, 4], [1, 2, 5, 6]], max_n=1) == pytest.approx(0.5)


@pytest.mark.parametrize("method", ["distinct_n", "self_bleu"])
def test_identical_rollouts_are_less_diverse_than_diverse_ones(method):
    config = DiversityConfig(method=method, n=2)
    assert trajectory_diversity(IDENTICAL, config) < trajectory_diversity(DIVERSE, config)
    assert trajectory_diversity([[1, 2, 3]], config) == 0.0  # one rollout: nothing to compare


def test_minmax_normalise_floors_and_handles_constants():
    np.testing.assert_allclose(minmax_normalise(np.array([0.0, 0.1, 0.2]), floor=0.0), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(minmax_normalise(np.array([0.0, 0.2]), floor=1e-3), [1e-3, 1.0])
    np.testing.assert_allclose(minmax_normalise(np.array([0.3, 0.3])), [1.0, 1.0])


def test_variance_promotion_scores_hand_values():
    ovs = np.array([0.0, 0.25, 0.1875])  # all-correct, p=1/2, p=1/4
    tds = np.array([0.25, 1.0, 0.625])
    vps = variance_promotion_scores(ovs, tds, a=0.8, b=0.2, floor=0.0)
    # OVS_norm = [0, 1, 0.75], TDS_norm = [0, 1, 0.5]
    np.testing.assert_allclose(vps, [0.0, 1.0, 0.8 * 0.75 + 0.2 * 0.5])
    floored = variance_promotion_scores(ovs, tds, floor=1e-3)
    assert floored.min() == pytest.approx(1e-3)  # the floor keeps every prompt drawable


def test_score_table_updates_with_ema_and_orders_prompts():
    table = VPSScoreTable(VPSConfig(ema_new_weight=0.5, floor=0.0))
    table.update("solved", [1, 1, 1, 1], IDENTICAL)
    table.update("half", [1, 0, 1, 0], DIVERSE)
    table.update("quarter", [1, 0, 0, 0], DIVERSE)
    weights = table.weights(["solved", "half", "quarter", "never-seen"])
    assert weights[1] > weights[2] > weights[0]
    assert weights[3] == pytest.approx(weights[:3].mean())  # "mean" prior for unscored prompts
    assert np.isnan(table.vps(["never-seen"])[0])  # ...but its VPS stays unknown
    table.update("half", [0, 0, 0, 0], DIVERSE)  # EMA: p = 0.5 * 0.5 + 0.5 * 0 = 0.25
    assert table.scores["half"].pass_rate == pytest.approx(0.25)
    assert table.scores["half"].observations == 2


def test_score_table_seeded_pass_rates_and_fixed_prior():
    table = VPSScoreTable(VPSConfig(unscored_prior=0.05, floor=0.0))
    assert table.weights(["a", "b"]).tolist() == [0.05, 0.05]
    table.seed_pass_rate("a", 0.5)
    table.seed_pass_rate("b", 1.0)
    table.seed_pass_rate("c", math.nan)  # no estimate: stays unscored
    weights = table.weights(["a", "b", "c"])
    # No TDS known yet: TDS_norm imputed 0.5 for both; OVS_norm = [1, 0]
    np.testing.assert_allclose(weights, [0.8 + 0.1, 0.1, 0.05])
    table.update("b", [1, 0], [[1, 2], [3, 4]])  # EMA from the seeded 1.0: p = 0.75
    assert table.scores["b"].pass_rate == pytest.approx(0.75)


def test_seeding_from_counts_weighs_the_evidence_the_curated_rollouts_are():
    vps = VPSScoreTable(VPSConfig())
    vps.seed_counts("two", 1, 2)  # stopped early: one right, one wrong
    vps.seed_counts("none", 0, 0)  # no counted rollout: stays unscored
    assert vps.scores["two"].pass_rate == pytest.approx(0.5) and "none" not in vps.scores
    vps.seed_counts("easy", 2, 2)  # the posterior mean, not the raw 1.0: OVS stays positive
    assert vps.scores["easy"].pass_rate == pytest.approx(0.75)
    posterior = PosteriorScoreTable(PosteriorConfig(seed_rollouts=8.0))
    posterior.seed_counts("few", 1, 2)
    posterior.seed_pass_rate("many", 0.5)  # a bare pass rate counts as seed_rollouts rollouts
    assert (posterior.scores["few"].right, posterior.scores["few"].wrong) == (1.0, 1.0)
    assert (posterior.scores["many"].right, posterior.scores["many"].wrong) == (4.0, 4.0)


def test_score_table_save_load_round_trip(tmp_path):
    config = VPSConfig(ovs_weight=0.7, tds_weight=0.3, diversity=DiversityConfig("self_bleu", 3))
    table = VPSScoreTable(config)
    table.update("x", [1, 0, 1], [[1, 2, 3], [1, 2, 4], [5, 6, 7]])
    table.seed_pass_rate("y", 0.2)
    table.save(tmp_path / "vps.json")
    loaded = VPSScoreTable.load(tmp_path / "vps.json")
    assert loaded.config == config
    assert loaded.scores == table.scores
    np.testing.assert_array_equal(loaded.weights(["x", "y", "z"]), table.weights(["x", "y", "z"]))


def test_group_rollouts_checks_trl_layout():
    groups = list(group_rollouts(["a", "a", "b", "b"], [1, 0, 0, 0], [[1], [2], [3], [4]], 2))
    assert groups == [("a", [1.0, 0.0], [[1], [2]]), ("b", [0.0, 0.0], [[3], [4]])]
    with pytest.raises(ValueError, match="mix prompts"):
        list(group_rollouts(["a", "b"], [1, 0], [[1], [2]], 2))


def test_informative_probability_closed_forms():
    assert informative_probability(np.array([0.5, 1.0, 0.0]), 2).tolist() == pytest.approx([0.5, 0.0, 0.0])
    assert informative_probability(np.array([0.9]), 8)[0] == pytest.approx(1 - 0.9**8 - 0.1**8)
    # Flat Beta(1, 1), G = 2: E[p^2] = E[(1-p)^2] = 1/3, so 1/3 of groups are informative.
    assert expected_informative_probability([1.0], [1.0], 2)[0] == pytest.approx(1 / 3)
    # Beta(9, 1) (8 right rollouts seen), G = 8: E[p^8] = 9/17, E[(1-p)^8] = 8! 1 / (10 ... 17) ~ 0.
    assert expected_informative_probability([9.0], [1.0], 8)[0] == pytest.approx(1 - 9 / 17 - math.factorial(8) * 9 / math.prod(range(9, 18)))


def test_posterior_table_counts_decay_with_a_half_life_and_rank_by_informativeness():
    table = PosteriorScoreTable(PosteriorConfig(seed_rollouts=8, half_life_batches=2), group_size=4)
    table.seed_pass_rate("easy", 1.0)  # 8 right, 0 wrong
    table.update("mid", [1, 0, 1, 0])
    table.update("mid", [1, 1, 0, 0])  # 4 right, 4 wrong
    assert (table.scores["easy"].right, table.scores["easy"].wrong) == (8.0, 0.0)
    assert (table.scores["mid"].right, table.scores["mid"].wrong, table.scores["mid"].observations) == (4.0, 4.0, 2)
    ids = ["easy", "mid", "never-seen"]
    weights = table.weights(ids)
    assert weights[0] == pytest.approx(expected_informative_probability([9.0], [1.0], 4)[0])
    assert weights[1] > weights[2] > weights[0]  # sure it is mixed > unknown (flat prior) > looks solved
    for _ in range(2):
        table.end_batch()  # one half-life later the evidence counts half
    assert table.weights(["easy"])[0] == pytest.approx(expected_informative_probability([5.0], [1.0], 4)[0])
    table.update("easy", [1, 1, 1, 1])  # decayed 4 + 4 new
    assert table.scores["easy"].right == pytest.approx(8.0) and table.scores["easy"].batch == 2
    assert np.isnan(table.vps(ids)[2]) and not np.isnan(table.vps(ids)[:2]).any()


def test_thompson_draw_gives_distinct_rows_and_skips_sure_saturated_prompts(tmp_path):
    table = PosteriorScoreTable(group_size=8)
    for prompt_id in ("solved-1", "solved-2"):
        for _ in range(20):
            table.update(prompt_id, [1.0] * 8)
    ids = ["solved-1", "solved-2"] + [f"new-{i}" for i in range(4)]
    draws = [table.draw(ids, 4, seed) for seed in range(200)]
    assert all(len(set(drawn)) == 4 for drawn in draws)
    picked = Counter(row for drawn in draws for row in drawn)
    # A flat posterior sometimes draws p near 0 or 1 (it may be saturated too), so "rarely", not "never".
    assert picked[0] + picked[1] < 0.05 * 800 and min(picked[row] for row in range(2, 6)) > 0.9 * 200
    assert table.draw(ids, 3, 5) == table.draw(ids, 3, 5) and len(table.draw(ids, 6, 1)) == 6
    table.save(tmp_path / "state.json")
    loaded = load_score_table(tmp_path / "state.json")
    assert isinstance(loaded, PosteriorScoreTable) and loaded.scores == table.scores
    assert loaded.weights(ids).tolist() == table.weights(ids).tolist()
    VPSScoreTable().save(tmp_path / "vps.json")
    assert isinstance(load_score_table(tmp_path / "vps.json"), VPSScoreTable)
    with pytest.raises(ValueError, match="VASConfig.scorer"):  # a checkpoint of the other scorer
        PosteriorScoreTable().load_state_dict(VPSScoreTable().state_dict())
    with pytest.raises(ValueError, match="VASConfig.scorer"):
        VPSScoreTable().load_state_dict(table.state_dict())
