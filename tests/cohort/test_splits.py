"""make_splits: disjoint, complete, stratified, reproducible, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from clinfuse.cohort import make_splits
from clinfuse.errors import CohortError


@pytest.fixture
def labels() -> np.ndarray:
    return np.array([0] * 70 + [1] * 30 + [2] * 20)


def test_disjoint_cover_stratified(labels: np.ndarray) -> None:
    splits = make_splits(labels, n_folds=5, test_fraction=0.2, seed=0)
    assert len(splits.test) == 24
    rest = np.setdiff1d(np.arange(len(labels)), splits.test)
    vals = np.concatenate([val for _, val in splits.folds])
    np.testing.assert_array_equal(np.sort(vals), rest)  # each non-test patient validates exactly once
    overall = np.bincount(labels) / len(labels)
    for train, val in splits.folds:
        assert not set(train) & set(val) and not set(train) & set(splits.test)
        np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), rest)
        assert np.abs(np.bincount(labels[val], minlength=3) / len(val) - overall).max() < 0.06
    assert np.abs(np.bincount(labels[splits.test]) / len(splits.test) - overall).max() < 0.03


def test_reproducible_and_seeded(labels: np.ndarray) -> None:
    a, b = make_splits(labels, 3, 0.2, seed=1), make_splits(labels, 3, 0.2, seed=1)
    c = make_splits(labels, 3, 0.2, seed=2)
    np.testing.assert_array_equal(a.test, b.test)
    for (ta, va), (tb, vb) in zip(a.folds, b.folds, strict=True):
        np.testing.assert_array_equal(ta, tb)
        np.testing.assert_array_equal(va, vb)
    assert not np.array_equal(a.test, c.test)


def test_no_test_set_and_frame(labels: np.ndarray) -> None:
    splits = make_splits(labels, 4, 0.0, seed=0)
    assert len(splits.test) == 0
    frame = splits.to_frame([f"P-{i}" for i in range(len(labels))])
    assert list(frame.columns) == ["patient", "split", "fold"]
    assert set(frame["split"]) == {"cv"} and sorted(frame["fold"].unique()) == [0, 1, 2, 3]
    frame = make_splits(labels, 4, 0.25, seed=0).to_frame([str(i) for i in range(len(labels))])
    assert (frame["split"] == "test").sum() == 30 and (frame.loc[frame["split"] == "test", "fold"] == -1).all()


def test_too_few_per_class() -> None:
    y = np.array([0] * 20 + [1] * 4)
    with pytest.raises(CohortError, match="class 1 has 4 patients but 5 folds"):
        make_splits(y, 5, 0.2, seed=0)
    make_splits(y, 3, 0.0, seed=0)
