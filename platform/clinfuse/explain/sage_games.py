"""Value functions of SAGE games: a loss or a metric of every coalition's predictions, under patient weights.

Each function takes the model's output for every coalition, ``(n, C)`` (one logit) or ``(n, C, K)`` (``K``
class logits), and a matrix of patient weights ``w`` of shape ``(resamples, n)``, and returns the value of
every coalition under every weight row, ``(resamples, C)``. A row of ones gives the point estimate and a row
of bootstrap counts gives the value on that resample (the counts are how often each patient was drawn, so the
weighted value equals the value on the resampled patients exactly), which vectorises the bootstrap.

These are NumPy twins of ``training.survival.cox_ph_loss`` and of the AUROC / C-index in ``training.metrics``:
``explain`` sits beside ``training`` in the layering and may not import it. The definitions agree (the tests
compare them); the one difference is that AUROC treats scores within ``TIED_TOL`` as tied, like the C-index
does, because the coalition without any modality gives every patient the same output up to float rounding
and that rounding must not rank patients.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from clinfuse.concordance import harrell_c_weighted

TIED_TOL = 1e-8
# Largest temporary array (cells) one block may allocate; keeps 2^M coalitions x resamples x patients bounded.
_BLOCK_CELLS = 4_000_000


def _blocks(total: int, cells_per_item: int) -> Iterator[slice]:
    """Consecutive slices of ``range(total)`` whose items need at most ``_BLOCK_CELLS`` cells together."""
    step = max(1, _BLOCK_CELLS // max(1, cells_per_item))
    for start in range(0, total, step):
        yield slice(start, min(start + step, total))


def _weighted_mean(per_patient: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``(resamples, C)`` weighted mean over patients of ``(n, C)`` per-patient values."""
    total = w.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (w @ per_patient) / total, np.nan)


def binary_log_loss(logits: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mean binary log-loss ``log(1 + e^z) - y z`` (the cross-entropy of ``sigmoid(z)``), per coalition.

    Args:
        logits: ``(n, C)`` logit of every coalition.
        y: ``(n,)`` labels in {0, 1}.
        w: ``(resamples, n)`` patient weights.

    Returns:
        ``(resamples, C)`` mean loss in nats.
    """
    # logaddexp keeps large |z| exact where log(1 + exp(z)) would overflow or lose the small term.
    per_patient = np.logaddexp(0.0, logits) - y[:, None] * logits
    return _weighted_mean(per_patient, w)


def cross_entropy(logits: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mean multiclass cross-entropy ``logsumexp(z) - z_y``, per coalition.

    Args:
        logits: ``(n, C, K)`` class logits of every coalition.
        y: ``(n,)`` class indices in ``[0, K)``.
        w: ``(resamples, n)`` patient weights.

    Returns:
        ``(resamples, C)`` mean loss in nats.
    """
    top = logits.max(axis=2, keepdims=True)
    log_norm = top[..., 0] + np.log(np.exp(logits - top).sum(axis=2))
    per_patient = log_norm - logits[np.arange(len(y)), :, y]
    return _weighted_mean(per_patient, w)


def cox_partial_nll(risk: np.ndarray, time: np.ndarray, event: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Negative Cox partial log-likelihood (Breslow ties) per event, per coalition.

    With weights ``w_i``: ``-sum_i w_i d_i [r_i - log sum_{j: t_j >= t_i} w_j e^{r_j}] / sum_i w_i d_i``. Unlike
    a log-loss it is not a mean of per-patient terms (each risk set couples patients), so resamples cannot be
    a weighted mean of a fixed matrix; the risk-set sums are recomputed per weight row instead.

    Args:
        risk: ``(n, C)`` predicted log-risk of every coalition.
        time: ``(n,)`` follow-up times.
        event: ``(n,)`` 1 where the event was observed, 0 where censored.
        w: ``(resamples, n)`` patient weights.

    Returns:
        ``(resamples, C)``; NaN for a weight row without a (weighted) event.
    """
    order = np.argsort(-time, kind="stable")
    t_sorted = time[order]
    # Under Breslow every member of a tie group shares the risk set that ends at the group's last position
    # (descending time).
    starts = np.flatnonzero(np.r_[True, t_sorted[1:] != t_sorted[:-1]])
    group_end = np.r_[starts[1:], len(t_sorted)] - 1
    group_of = np.repeat(group_end, np.diff(np.r_[starts, len(t_sorted)]))
    r_sorted = risk[order]
    # Shifting each coalition by its largest risk leaves the likelihood unchanged and keeps exp() finite.
    shift = r_sorted.max(axis=0)
    exp_r = np.exp(r_sorted - shift)
    d_sorted = event[order].astype(float)
    w_sorted = w[:, order]
    n, n_coalitions = risk.shape
    out = np.empty((w.shape[0], n_coalitions))
    for rows in _blocks(w.shape[0], n * n_coalitions):
        wb = w_sorted[rows]
        risk_set = np.cumsum(wb[:, :, None] * exp_r[None], axis=1)[:, group_of]
        wd = wb * d_sorted
        with np.errstate(divide="ignore"):
            log_set = np.log(risk_set) + shift
        # Patients with zero weight may sit outside every drawn risk set (log 0): their term is multiplied by 0.
        terms = np.where(wd[:, :, None] > 0, r_sorted[None] - log_set, 0.0)
        n_events = wd.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[rows] = np.where(n_events[:, None] > 0, -np.einsum("bi,bic->bc", wd, terms) / n_events[:, None], np.nan)
    return out


def _auroc(positive: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted AUROC of one score per row of ``w``; ties (within ``TIED_TOL``) count one half."""
    order = np.argsort(score, kind="mergesort")
    s_sorted = score[order]
    starts = np.flatnonzero(np.r_[True, np.diff(s_sorted) > TIED_TOL])
    pos_sorted = positive[order]
    w_sorted = w[:, order]
    pos = np.add.reduceat(w_sorted * pos_sorted, starts, axis=1)
    neg = np.add.reduceat(w_sorted * ~pos_sorted, starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    den = pos.sum(axis=1) * neg.sum(axis=1)
    num = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def binary_auroc(logits: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUROC of the logit (the same ranking as the probability), per coalition.

    Args:
        logits: ``(n, C)`` logit of every coalition.
        y: ``(n,)`` labels in {0, 1}.
        w: ``(resamples, n)`` patient weights.

    Returns:
        ``(resamples, C)``; NaN for a weight row holding one class only.
    """
    positive = y == 1
    return np.stack([_auroc(positive, logits[:, c], w) for c in range(logits.shape[1])], axis=1)


def macro_auroc(logits: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """One-vs-rest AUROC of the softmax probabilities, macro-averaged over classes, per coalition.

    The average runs over the classes present in the weighted patients (as in ``training.metrics``); it is NaN
    with fewer than two classes present.

    Args:
        logits: ``(n, C, K)`` class logits of every coalition.
        y: ``(n,)`` class indices in ``[0, K)``.
        w: ``(resamples, n)`` patient weights.

    Returns:
        ``(resamples, C)``.
    """
    n_classes = logits.shape[2]
    shifted = np.exp(logits - logits.max(axis=2, keepdims=True))
    prob = shifted / shifted.sum(axis=2, keepdims=True)
    present = (w @ np.eye(n_classes)[y]) > 0
    several = present.sum(axis=1) >= 2
    out = np.empty((w.shape[0], logits.shape[1]))
    for c in range(logits.shape[1]):
        per_class = np.stack([_auroc(y == k, prob[:, c, k], w) for k in range(n_classes)], axis=1)
        per_class = np.where(present, per_class, np.nan)
        finite = np.isfinite(per_class)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(finite, per_class, 0.0).sum(axis=1) / finite.sum(axis=1)
        out[:, c] = np.where(several, mean, np.nan)
    return out


def harrell_c(risk: np.ndarray, time: np.ndarray, event: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Harrell's C-index per coalition (scikit-survival's ``concordance_index_censored``).

    A pair (i, j) is comparable when i had the event and either ``t_i < t_j``, or ``t_i == t_j`` and j was
    censored; it is concordant when ``risk_i > risk_j`` and counts one half when the risks tie. Counted by
    :func:`clinfuse.concordance.harrell_c_weighted` in O(n log n) per weight row (the n x n pair matrix this
    replaced took 4 GB and minutes per validation fold at 10^5 patients).

    Args:
        risk: ``(n, C)`` predicted risk of every coalition (higher = earlier event).
        time: ``(n,)`` follow-up times.
        event: ``(n,)`` event indicators.
        w: ``(resamples, n)`` patient weights.

    Returns:
        ``(resamples, C)``; NaN for a weight row without a comparable pair.
    """
    columns = [harrell_c_weighted(time, event, risk[:, c], w, tied_tol=TIED_TOL) for c in range(risk.shape[1])]
    return np.stack(columns, axis=1)
