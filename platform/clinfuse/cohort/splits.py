"""Patient-level splits: a stratified held-out test set, then stratified K-fold on the rest.

Splitting is by patient (one row per patient everywhere), seeded, and stratified on the class (survival:
on the event indicator), so every fold sees every class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from clinfuse.errors import CohortError


@dataclass
class Splits:
    """Indices into the cohort's patient order.

    Args:
        test: ``(n_test,)`` held-out test patients (empty when ``test_fraction`` is 0).
        folds: per fold, ``(train, val)`` index arrays over the non-test patients.
    """

    test: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]

    def to_frame(self, ids: Sequence[str]) -> pd.DataFrame:
        """One row per patient: ``patient``, ``split`` (``cv``/``test``), ``fold`` (validation fold, or -1).

        Args:
            ids: patient ids in cohort order; pass pseudonymous ids (``clinfuse.privacy.pseudonymise``).
        """
        fold = np.full(len(ids), -1, dtype=np.int64)
        for k, (_, val) in enumerate(self.folds):
            fold[val] = k
        split = np.where(np.isin(np.arange(len(ids)), self.test), "test", "cv")
        return pd.DataFrame({"patient": list(ids), "split": split, "fold": fold})


def _minimum(n_folds: int, test_fraction: float) -> int:
    """Smallest class size that leaves ``n_folds`` patients after the test share is taken."""
    return max(n_folds + (1 if test_fraction > 0 else 0), math.ceil(n_folds / (1.0 - test_fraction)))


def make_splits(y: np.ndarray, n_folds: int, test_fraction: float, seed: int) -> Splits:
    """Stratified, seeded, patient-level test split and K folds.

    Args:
        y: ``(n,)`` class index per patient (survival: the event indicator).
        n_folds: number of cross-validation folds (at least 2).
        test_fraction: share of patients held out for the final test, in ``[0, 0.9)``.
        seed: random seed; the same seed always gives the same splits.

    Raises:
        CohortError: a class has too few patients for the folds and the test set.
    """
    y = np.asarray(y)
    if n_folds < 2:
        raise CohortError(f"folds = {n_folds}: need at least 2 folds; pass --folds 2 or more")
    if not 0.0 <= test_fraction < 0.9:
        raise CohortError(f"test_fraction = {test_fraction}: must be in [0, 0.9); e.g. 0.2")
    classes, counts = np.unique(y, return_counts=True)
    need = _minimum(n_folds, test_fraction)
    small = [f"class {c} has {k}" for c, k in zip(classes, counts, strict=True) if k < need]
    if small:
        raise CohortError(
            f"label: {', '.join(small)} patients but {n_folds} folds with a test fraction of {test_fraction} "
            f"need at least {need} per class; lower --folds or --test-fraction, or add patients"
        )
    everyone = np.arange(len(y))
    if test_fraction > 0:
        rest, test = train_test_split(everyone, test_size=test_fraction, stratify=y, random_state=seed)
        rest, test = np.sort(rest), np.sort(test)
    else:
        rest, test = everyone, np.array([], dtype=np.int64)
    _, rest_counts = np.unique(y[rest], return_counts=True)
    if len(rest_counts) < len(classes) or rest_counts.min() < n_folds:
        raise CohortError(
            f"label: after the test split a class has {int(rest_counts.min())} patients, fewer than "
            f"{n_folds} folds; lower --folds or --test-fraction, or add patients"
        )
    kfold = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = [(rest[tr], rest[va]) for tr, va in kfold.split(rest, y[rest])]
    return Splits(test=test.astype(np.int64), folds=folds)
