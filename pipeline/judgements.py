"""What the annotation stages say about each problem of a shard: keep it, or why not.

Annotation shards are aligned row by row with their problems shard. `is_representative = False`
(a duplicate) and any true `contaminated_<benchmark>` reject a problem; other columns are scores.
Generation uses this to spend no teacher compute on rejected problems, selection to filter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pyarrow as pa


def is_judgement(column: str) -> bool:
    return column == "is_representative" or column.startswith("contaminated_")


def keep_mask(problem_ids: pa.ChunkedArray, annotations: Sequence[pa.Table]) -> tuple[np.ndarray, Counter[str]]:
    """A boolean keep mask over the problems, and the first rejection reason of each dropped row, counted."""
    keep = np.ones(len(problem_ids), dtype=bool)
    drops: Counter[str] = Counter()
    for table in annotations:
        if not table.column("problem_id").equals(problem_ids):
            raise ValueError("annotation shard is not aligned with its problems shard")
        for name in filter(is_judgement, table.column_names):
            values = np.asarray(table.column(name).fill_null(name == "is_representative").to_numpy(zero_copy_only=False), dtype=bool)
            rejected = ~values if name == "is_representative" else values
            reason = "duplicate" if name == "is_representative" else name
            drops[f"dropped_{reason}"] += int((rejected & keep).sum())
            keep &= ~rejected
    return keep, drops
