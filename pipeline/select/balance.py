"""Balanced, seeded subsets: hierarchical water-filling over (domain, source, cluster)-style keys.

The target is shared across the first key's groups as evenly as their sizes allow (a group smaller
than its fair share gives all of its rows; what it leaves is spread over the others), then each
group's share across its second-key groups, and so on; the last level's groups are capped at
`max_per_group`, and the first key's groups optionally at `max_ratio_to_median` times their median
share (no type twice as frequent as the median type). Inside a group, rows are taken in a seeded random
order. The same rows and seed always give the same subset.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def water_fill(capacities: np.ndarray, budget: int, order: np.ndarray) -> np.ndarray:
    """Integer shares, share_i <= capacity_i, summing to min(budget, sum(capacities)), as equal as the
    capacities allow. Shares that cannot be equal differ by one; `order` says who gets the extra one."""
    capacities = np.asarray(capacities, dtype=np.int64)
    budget = min(int(budget), int(capacities.sum()))
    low, high = 0, int(capacities.max(initial=0))
    while low < high:  # the largest level whose clipped total still fits the budget
        level = (low + high + 1) // 2
        if np.minimum(capacities, level).sum() <= budget:
            low = level
        else:
            high = level - 1
    shares = np.minimum(capacities, low)
    can_take_one_more = order[capacities[order] > low]
    shares[can_take_one_more[: budget - int(shares.sum())]] += 1
    return shares


def median_capped_level(capacities: np.ndarray, ratio: float) -> int:
    """The largest per-group level L with L <= ratio * median(min(capacities, L)): capping every group
    at L leaves no group above `ratio` times the median group, and keeps as many rows as that allows."""
    if ratio < 1:
        raise ValueError(f"max_ratio_to_median must be >= 1, got {ratio}")
    capacities = np.asarray(capacities, dtype=np.int64)
    low, high = 0, int(capacities.max(initial=0))
    while low < high:  # feasible levels form an interval [0, L*]: below the median the share grows with L
        level = (low + high + 1) // 2
        if level <= ratio * float(np.median(np.minimum(capacities, level))):
            low = level
        else:
            high = level - 1
    return low


def quota_sample(
    keys: Sequence[Sequence[Hashable]],
    target: int,
    *,
    seed: int,
    max_per_group: int | None = None,
    max_ratio_to_median: float | None = None,
) -> np.ndarray:
    """Sorted row indices of a balanced subset of min(target, rows available under the caps) rows.

    `keys` holds one column per level, outermost first, e.g. [domains, sources, clusters], each with
    one (sortable) value per row.
    """
    if not keys:
        raise ValueError("quota_sample needs at least one key column")
    rows = len(keys[0])
    codes = [np.unique(np.asarray(column), return_inverse=True)[1].reshape(-1) for column in keys]
    rng = np.random.default_rng(seed)
    priority = rng.permutation(rows)
    by_leaf = np.lexsort((priority, *reversed(codes)))  # rows grouped by their full key, in priority order
    leaf_start = np.flatnonzero(
        np.concatenate([[True], np.any([c[by_leaf][1:] != c[by_leaf][:-1] for c in codes], axis=0)])
    )
    leaf_size = np.diff(np.concatenate([leaf_start, [rows]]))
    leaf_cap = leaf_size if max_per_group is None else np.minimum(leaf_size, max_per_group)
    leaf_codes = [c[by_leaf][leaf_start] for c in codes]
    shares = np.zeros(len(leaf_start), dtype=np.int64)

    def allocate(first: int, last: int, level: int, budget: int) -> None:
        if level == len(codes):
            shares[first] = budget  # one leaf: its full key is fixed
            return
        level_codes = leaf_codes[level][first:last]
        child_start = first + np.flatnonzero(np.concatenate([[True], level_codes[1:] != level_codes[:-1]]))
        child_end = np.concatenate([child_start[1:], [last]])
        capacity = np.array([leaf_cap[a:b].sum() for a, b in zip(child_start, child_end)])
        if level == 0 and max_ratio_to_median is not None:
            capacity = np.minimum(capacity, median_capped_level(capacity, max_ratio_to_median))
        for a, b, share in zip(child_start, child_end, water_fill(capacity, budget, rng.permutation(len(capacity)))):
            allocate(int(a), int(b), level + 1, int(share))

    allocate(0, len(leaf_start), 0, target)
    taken = np.concatenate(
        [by_leaf[start : start + share] for start, share in zip(leaf_start, shares)] or [np.zeros(0, np.int64)]
    )
    return np.sort(taken)
