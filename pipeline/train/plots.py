"""Training plots: VPS histogram, VPS bin-to-bin transition matrix (the VAS paper's figure 3), zero-variance curve."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

Curve = Sequence[tuple[int, float]]


def vps_bin_edges(upper: float = 1.0, bins: int = 5) -> np.ndarray:
    """Fixed edges over [0, a + b], so snapshots taken at different steps share bins."""
    return np.linspace(0.0, upper, bins + 1)


def _as_floats(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def vps_transition_matrix(
    before: Sequence[float | None], after: Sequence[float | None], edges: np.ndarray
) -> np.ndarray:
    """Row-normalised counts of prompts moving from VPS bin i (before) to bin j (after), over the prompts
    scored at both times (None/NaN = unscored); empty rows stay 0."""
    old, new = _as_floats(before), _as_floats(after)
    both = ~np.isnan(old) & ~np.isnan(new)
    bins = len(edges) - 1
    start = np.clip(np.digitize(old[both], edges[1:-1]), 0, bins - 1)
    end = np.clip(np.digitize(new[both], edges[1:-1]), 0, bins - 1)
    counts = np.zeros((bins, bins))
    np.add.at(counts, (start, end), 1)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def plot_vps_histogram(snapshots: Sequence[tuple[int, Sequence[float | None]]], path: Path, edges: np.ndarray) -> Path:
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for step, values in (snapshots[0], snapshots[-1]) if len(snapshots) > 1 else snapshots[:1]:
        scored = _as_floats(values)
        scored = scored[~np.isnan(scored)]
        axis.hist(scored, bins=np.linspace(edges[0], edges[-1], 21).tolist(), alpha=0.6, label=f"step {step} ({scored.size} scored)")
    axis.set_xlabel("VPS")
    axis.set_ylabel("prompts")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_transition_matrix(matrix: np.ndarray, edges: np.ndarray, title: str, path: Path) -> Path:
    figure, axis = plt.subplots(figsize=(4.5, 4))
    image = axis.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    labels = [f"{low:.1f}-{high:.1f}" for low, high in zip(edges[:-1], edges[1:])]
    axis.set_xticks(range(len(labels)), labels, rotation=45)
    axis.set_yticks(range(len(labels)), labels)
    for (row, column), value in np.ndenumerate(matrix):
        axis.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=7)
    axis.set_xlabel("VPS bin, later")
    axis.set_ylabel("VPS bin, earlier")
    axis.set_title(title)
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_curves(curves: Mapping[str, Curve], ylabel: str, path: Path, xlabel: str = "step") -> Path:
    """One line per label (e.g. zero-variance group fraction per step for uniform vs VAS)."""
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for label, points in curves.items():
        if points:
            steps, values = zip(*points)
            axis.plot(steps, values, label=label)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def first_mostly_scored(snapshots: Sequence[tuple[int, Sequence[float | None]]]) -> tuple[int, Sequence[float | None]]:
    return next(((step, v) for step, v in snapshots if np.mean([x is not None for x in v]) >= 0.5), snapshots[0])


def write_training_plots(
    vps_snapshots: Sequence[tuple[int, Sequence[float | None]]],
    zero_variance: Curve,
    output_dir: Path,
    vps_upper: float = 1.0,
) -> list[Path]:
    """The three figures of one run; the transition matrix compares the first and last VPS snapshots
    (the first one after most prompts have a score, when the run is long enough for that)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    edges = vps_bin_edges(vps_upper)
    written = [plot_curves({"accuracy groups": zero_variance}, "zero-variance group fraction", output_dir / "zero_variance.png")]
    if vps_snapshots:
        written.append(plot_vps_histogram(vps_snapshots, output_dir / "vps_histogram.png", edges))
        (first_step, first), (last_step, last) = first_mostly_scored(vps_snapshots), vps_snapshots[-1]
        matrix = vps_transition_matrix(first, last, edges)
        title = f"VPS bins, step {first_step} -> {last_step}"
        written.append(plot_transition_matrix(matrix, edges, title, output_dir / "vps_transitions.png"))
    return written
