"""The background summary that travels with a logged model: aggregates of at least ``min_size`` patients."""

from __future__ import annotations

import numpy as np

from clinfuse.explain.background import summarise_background


def test_no_centre_is_one_patient_and_the_mean_is_kept() -> None:
    rng = np.random.default_rng(0)
    rows = np.vstack([rng.normal(0, 1, (60, 4)), rng.normal(6, 1, (30, 4)), [[40.0, 40.0, 40.0, 40.0]]])
    background = summarise_background(rows, clusters=6, min_size=5, max_rows=50)
    centres = np.unique(background, axis=0)
    assert len(centres) <= 6 and 45 <= len(background) <= 50
    # the outlier alone would be a centre of one patient: it is merged, so no row sits near it
    assert np.abs(background - 40.0).max(axis=1).min() > 10
    # weights follow cluster sizes: the summary's mean is the training mean up to rounding of the repeats
    np.testing.assert_allclose(background.mean(axis=0), rows.mean(axis=0), atol=0.5)
    assert not any((np.abs(rows - c).max(axis=1) < 1e-6).any() for c in centres)


def test_fewer_patients_than_a_cluster_give_their_mean() -> None:
    rows = np.arange(12, dtype=float).reshape(4, 3)
    np.testing.assert_allclose(summarise_background(rows, min_size=5), rows.mean(axis=0, keepdims=True))


def test_a_large_cohort_keeps_its_cluster_weights_when_centres_come_from_a_sample() -> None:
    """Above the k-means sample size every row still joins a centre: the weights (repeats) follow the whole
    cohort's cluster sizes, so the summary's mean stays the training mean."""
    rng = np.random.default_rng(1)
    rows = np.vstack([rng.normal(0, 1, (9000, 3)), rng.normal(8, 1, (3000, 3))])
    background = summarise_background(rows, clusters=2, min_size=5, max_rows=40)
    assert len(background) == 40
    high = (background[:, 0] > 4).sum()
    assert high == 10  # 3,000 of 12,000 rows: a quarter of the 40 rows
    np.testing.assert_allclose(background.mean(axis=0), rows.mean(axis=0), atol=0.05)
