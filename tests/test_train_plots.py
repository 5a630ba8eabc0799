"""VPS bin transitions (the VAS paper's figure 3) with hand-counted values, and the PNGs a run writes."""

from __future__ import annotations

import numpy as np

from pipeline.train.plots import vps_bin_edges, vps_transition_matrix, write_training_plots


def test_transition_matrix_hand_counts():
    edges = vps_bin_edges(1.0, bins=2)  # [0, 0.5), [0.5, 1]
    before = [0.1, 0.2, 0.3, 0.9, 0.6]
    after = [0.1, 0.7, 0.8, 0.9, 0.2]
    # low -> low 1, low -> high 2; high -> high 1, high -> low 1
    np.testing.assert_allclose(vps_transition_matrix(before, after, edges), [[1 / 3, 2 / 3], [0.5, 0.5]])
    assert vps_transition_matrix([1.0], [1.0], edges)[1, 1] == 1.0  # the top edge belongs to the last bin
    assert vps_transition_matrix([0.1], [0.1], edges)[1].sum() == 0.0  # an empty row stays empty
    # Prompts unscored at either time are left out.
    np.testing.assert_allclose(vps_transition_matrix([None, 0.1, 0.9], [0.9, 0.9, None], edges), [[0, 1], [0, 0]])


def test_write_training_plots(tmp_path):
    snapshots = [(0, [0.1, 0.5, 0.9]), (3, [0.2, 0.6, 0.3])]
    written = write_training_plots(snapshots, [(0, 0.5), (1, 0.25)], tmp_path)
    assert sorted(path.name for path in written) == ["vps_histogram.png", "vps_transitions.png", "zero_variance.png"]
    assert all(path.read_bytes()[:4] == b"\x89PNG" for path in written)
