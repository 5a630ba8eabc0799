"""Pure parts of the type-balanced selection: the median cap, the difficulty band, the type classifier."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from pipeline.score.problem_type import ProblemTypeConfig, classify, fit_classifier
from pipeline.select.balance import median_capped_level, quota_sample
from pipeline.select.plan import SelectConfig, difficulty_verdict

# RL candidates per type on the default run's shape: one large type, a long tail.
CAPACITIES = [733, 173, 148, 117, 806, 71, 67, 62, 57, 50, 35, 31, 15]


def test_median_cap_is_the_largest_level_within_twice_the_median():
    level = median_capped_level(np.array(CAPACITIES), 2.0)
    shares = np.minimum(CAPACITIES, level)
    assert level == 134 and shares.max() <= 2 * np.median(shares)
    assert np.minimum(CAPACITIES, level + 1).max() > 2 * np.median(np.minimum(CAPACITIES, level + 1))
    assert median_capped_level(np.array([10, 12, 15]), 2.0) == 15  # already balanced: no cap
    with pytest.raises(ValueError):
        median_capped_level(np.array([1, 2]), 0.5)


def test_quota_sample_keeps_no_type_above_twice_the_median():
    types = [f"t{i}" for i, count in enumerate(CAPACITIES) for _ in range(count)]
    domains = ["a" if i % 3 else "b" for i in range(len(types))]
    chosen = quota_sample([types, domains], 15_000, seed=0, max_ratio_to_median=2.0)
    counts = Counter(types[i] for i in chosen)
    assert len(counts) == 13 and max(counts.values()) <= 2 * np.median(list(counts.values()))
    assert sum(counts.values()) == sum(min(c, 134) for c in CAPACITIES)
    assert np.array_equal(chosen, quota_sample([types, domains], 15_000, seed=0, max_ratio_to_median=2.0))
    assert len(quota_sample([types, domains], 15_000, seed=0)) == len(types)  # no ratio: everything


def test_cold_start_difficulty_band():
    config = SelectConfig()
    assert difficulty_verdict(8 / 9, 9, config) == "too_easy_for_policy"
    assert difficulty_verdict(7 / 9, 9, config) is None and difficulty_verdict(0.0, 9, config) is None
    assert difficulty_verdict(None, 0, config) is None  # no rollouts: kept, difficulty unknown
    strict = SelectConfig(cold_start_keep_unknown_difficulty=False, cold_start_min_pass_rate=0.2)
    assert difficulty_verdict(1.0, 1, strict) == "difficulty_unknown"  # one rollout says nothing
    assert difficulty_verdict(0.1, 9, strict) == "too_hard_for_policy"


def test_type_classifier_learns_separable_types_and_is_deterministic():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    labels = [name for name in ("algebra", "logic", "topology") for _ in range(40)]
    vectors = np.repeat(centres, 40, axis=0) + 0.3 * rng.normal(size=(120, 16))
    names, weights = fit_classifier(vectors, labels, ProblemTypeConfig())
    chosen, probability = classify(vectors, weights)
    assert names == ["algebra", "logic", "topology"] and weights.shape == (3, 17)
    assert [names[i] for i in chosen] == labels and ((0 < probability) & (probability <= 1)).all()
    assert np.array_equal(weights, fit_classifier(vectors, labels, ProblemTypeConfig())[1])
    few = fit_classifier(vectors[:45], labels[:45], ProblemTypeConfig())[0]
    assert few == ["algebra", "logic"]  # 5 logic rows: just enough (min_examples_per_type = 5)
