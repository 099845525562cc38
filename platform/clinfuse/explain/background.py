"""The background a feature explainer compares each patient with, summarised so it can travel with a model.

shap's explainers (Exact, Permutation and Partition through ``shap.maskers.Independent``, and expected gradients)
take background rows of the training distribution. The logged model must not carry training patients' rows,
so the background is summarised the way ``shap.kmeans`` does: k-means centres of the fold-transformed feature
vectors. Two differences from ``shap.kmeans``: every centre averages at least ``min_size`` patients (a smaller
cluster is merged into its nearest neighbour, so no centre is one patient's vector), and centres keep their
fractional values (``shap.kmeans`` snaps each value to the nearest training value, which copies patients'
values back in). shap's maskers weight background rows equally, so each centre is repeated in proportion to
its cluster's size; the explainers then average over the training distribution as the full sample would.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans

# Rows k-means places its centres on; more rows move the centres of a 10-centre summary by little.
_FIT_ROWS = 5000


def summarise_background(
    rows: np.ndarray, *, clusters: int = 10, min_size: int = 5, max_rows: int = 50, seed: int = 0
) -> np.ndarray:
    """Weighted k-means summary of training rows, as ``(b, F)`` float32 with ``b <= max_rows``.

    Args:
        rows: ``(n, F)`` preprocessed rows of training patients.
        clusters: the most centres kept.
        min_size: the fewest patients a centre averages (fewer than ``min_size`` rows: one centre, their mean).
        max_rows: the most rows of the result (each centre at least once, the rest by cluster size).
        seed: seeds k-means.
    """
    rows = np.asarray(rows, dtype=np.float64)
    if len(rows) == 0:
        return np.zeros((0, rows.shape[1] if rows.ndim == 2 else 0), dtype=np.float32)
    k = max(1, min(clusters, len(rows) // max(min_size, 1)))
    labels = np.zeros(len(rows), dtype=int)
    if k > 1:
        # The centres are found on a fixed-size sample, then every row joins its nearest one: a registry fold's
        # 50,000+ rows cost one linear assignment pass instead of k-means iterations over all of them.
        sample = rows
        if len(rows) > _FIT_ROWS:
            sample = rows[np.random.default_rng(seed).choice(len(rows), _FIT_ROWS, replace=False)]
        labels = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(sample).predict(rows)
    centres, sizes = _merge_small(rows, labels, min_size)
    if len(centres) == 1:
        return centres.astype(np.float32)
    # At most max_rows rows, so an explainer that keeps max_rows never subsamples (and reweights) the summary.
    repeats = np.maximum(1, np.floor(sizes / sizes.sum() * max_rows)).astype(int)
    while repeats.sum() > max(max_rows, len(centres)):
        repeats[np.argmax(repeats)] -= 1
    return np.repeat(centres, repeats, axis=0).astype(np.float32)


def _merge_small(rows: np.ndarray, labels: np.ndarray, min_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres and sizes after moving the members of clusters under ``min_size`` to the nearest kept centre.

    A kept cluster keeps every member (its members were nearest to it among all centres), so each final
    centre averages at least ``min_size`` rows whenever one cluster reached that size.
    """
    ids, sizes = np.unique(labels, return_counts=True)
    kept = ids[sizes >= min_size]
    if len(kept) == 0:
        return rows.mean(axis=0, keepdims=True), np.array([len(rows)])
    if len(kept) < len(ids):
        centres = np.stack([rows[labels == i].mean(axis=0) for i in kept])
        moved = ~np.isin(labels, kept)
        labels = labels.copy()
        labels[moved] = kept[((rows[moved, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)]
    return np.stack([rows[labels == i].mean(axis=0) for i in kept]), np.array([(labels == i).sum() for i in kept])
