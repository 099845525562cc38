"""Evaluation metrics, decision thresholds and bootstrap uncertainty.

Every metric is computed from a matrix of patient weights ``w`` of shape ``(resamples, n)``: one row of ones
gives the point estimate, and a row of bootstrap counts gives the metric on that resample. One definition
therefore serves both, and the bootstrap is vectorised over resamples instead of looping over them.
A metric that is undefined on the given patients (one class only, no events) is NaN, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from clinfuse.training.survival import SurvivalScorer, default_horizon, survival_metrics

__all__ = [
    "bootstrap_all",
    "bootstrap_ci",
    "choose_threshold",
    "classification_metrics",
    "paired_bootstrap_test",
    "summarise_folds",
    "survival_metrics",
]

Task = Literal["binary", "multiclass", "survival"]

ECE_BINS = 10
_EPS = 1e-12
# Bound the size of one (resamples, n) weight block so memory stays small for big cohorts.
_BLOCK_CELLS = 2_000_000


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast_shapes(np.shape(num), np.shape(den)), np.nan)
    np.divide(num, den, out=out, where=np.asarray(den) > 0)
    return out


def _row_nanmean(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; NaN (without a warning) where a row is all NaN."""
    finite = np.isfinite(values)
    return _div(np.where(finite, values, 0.0).sum(axis=-1), finite.sum(axis=-1).astype(float))


def _ranking_metrics(positive: np.ndarray, score: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted AUROC (ties count one half) and average precision (sklearn's step definition) per row."""
    order = np.argsort(score, kind="mergesort")
    s_sorted = score[order]
    pos_sorted = positive[order]
    w_sorted = w[:, order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    pos = np.add.reduceat(w_sorted * pos_sorted, starts, axis=1)
    neg = np.add.reduceat(w_sorted * ~pos_sorted, starts, axis=1)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    auroc = _div((pos * (neg_below + 0.5 * neg)).sum(axis=1), n_pos * n_neg)
    auroc[n_neg <= 0] = np.nan
    tp = np.cumsum(pos[:, ::-1], axis=1)
    fp = np.cumsum(neg[:, ::-1], axis=1)
    precision = np.nan_to_num(_div(tp, tp + fp))
    auprc = _div((pos[:, ::-1] * precision).sum(axis=1), n_pos)
    auprc[n_neg <= 0] = np.nan
    return auroc, auprc


def _ece(confidence: np.ndarray, outcome: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Expected calibration error over ``ECE_BINS`` equal-width bins of ``confidence``."""
    bins = np.clip((confidence * ECE_BINS).astype(int), 0, ECE_BINS - 1)
    onehot = np.eye(ECE_BINS)[bins]
    gap = w @ (onehot * outcome[:, None]) - w @ (onehot * confidence[:, None])
    return _div(np.abs(gap).sum(axis=1), w.sum(axis=1))


def _binary_weighted(y: np.ndarray, prob: np.ndarray, w: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    positive = y == 1
    total = w.sum(axis=1)
    n_pos = w @ positive
    n_neg = total - n_pos
    both = (n_pos > 0) & (n_neg > 0)
    auroc, auprc = _ranking_metrics(positive, prob, w)
    predicted = prob >= threshold
    tp = w @ (positive & predicted)
    fp = w @ (~positive & predicted)
    fn, tn = n_pos - tp, n_neg - fp
    sensitivity, specificity = _div(tp, n_pos), _div(tn, n_neg)
    p = np.clip(prob, _EPS, 1 - _EPS)
    return {
        "auroc": auroc,
        "auprc": auprc,
        "balanced_accuracy": np.where(both, (sensitivity + specificity) / 2, np.nan),
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "accuracy": _div(tp + tn, total),
        "brier": _div(w @ (prob - y) ** 2, total),
        "ece": _ece(prob, positive.astype(float), w),
        "log_loss": _div(w @ -(y * np.log(p) + (1 - y) * np.log(1 - p)), total),
    }


def _multiclass_weighted(y: np.ndarray, prob: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    n_classes = prob.shape[1]
    onehot = np.eye(n_classes)[y]
    predicted = prob.argmax(axis=1)
    pred_onehot = np.eye(n_classes)[predicted]
    total = w.sum(axis=1)
    support = w @ onehot
    n_predicted = w @ pred_onehot
    tp = w @ (onehot * pred_onehot)
    present = support > 0
    # Macro averages run over the classes present in the evaluated patients (sklearn's convention for
    # recall); with fewer than two classes present the ranking metrics are undefined.
    several = present.sum(axis=1) >= 2
    ranking = [_ranking_metrics(y == k, prob[:, k], w) for k in range(n_classes)]
    auroc = np.stack([r[0] for r in ranking], axis=1)
    auprc = np.stack([r[1] for r in ranking], axis=1)
    recall = np.where(present, _div(tp, support), np.nan)
    f1 = np.where(present, _div(2 * tp, support + n_predicted), np.nan)
    negatives = total[:, None] - support
    specificity = np.where(present, _div(negatives - (n_predicted - tp), negatives), np.nan)
    confidence = prob.max(axis=1)
    p_true = np.clip(prob[np.arange(len(y)), y], _EPS, 1.0)
    return {
        "auroc": np.where(several, _row_nanmean(np.where(present, auroc, np.nan)), np.nan),
        "auprc": np.where(several, _row_nanmean(np.where(present, auprc, np.nan)), np.nan),
        "balanced_accuracy": np.where(several, _row_nanmean(recall), np.nan),
        "f1": _row_nanmean(f1),
        "sensitivity": _row_nanmean(recall),
        "specificity": _row_nanmean(specificity),
        "accuracy": _div(tp.sum(axis=1), total),
        "brier": _div(w @ ((prob - onehot) ** 2).sum(axis=1), total),
        "ece": _ece(confidence, (predicted == y).astype(float), w),
        "log_loss": _div(w @ -np.log(p_true), total),
    }


def _scorer(
    task: Task,
    y: np.ndarray,
    prob: np.ndarray,
    threshold: float | None,
    time: np.ndarray | None,
    horizon: float | None,
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """The task's metrics as a function of the weights ``w`` ``(resamples, n)``.

    Survival metrics sort the patients once here, so every block of resamples reuses that work.
    """
    if task == "binary":
        return lambda w: _binary_weighted(y, prob, w, 0.5 if threshold is None else threshold)
    if task == "multiclass":
        return lambda w: _multiclass_weighted(y, prob, w)
    if task == "survival":
        if time is None:
            raise ValueError("survival metrics need the follow-up times (time=...)")
        return SurvivalScorer(time, y, prob, default_horizon(time) if horizon is None else horizon)
    raise ValueError(f"unknown task {task!r}; expected binary, multiclass or survival")


def _as_arrays(y: np.ndarray, prob: np.ndarray, task: Task) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(np.int64).reshape(-1)
    prob = np.asarray(prob, dtype=float)
    prob = prob.reshape(len(y), -1) if task == "multiclass" else prob.reshape(-1)
    return y, prob


def choose_threshold(
    y: np.ndarray, prob: np.ndarray, rule: Literal["youden", "f1", "fixed"] = "youden", fixed: float = 0.5
) -> float:
    """Pick the binary decision threshold on validation predictions (then apply it to test).

    Args:
        y: true labels in {0, 1}, shape ``(n,)``.
        prob: positive-class probabilities, shape ``(n,)``.
        rule: ``youden`` maximises sensitivity + specificity - 1, ``f1`` maximises F1, ``fixed`` returns
            ``fixed``.
        fixed: the threshold of the ``fixed`` rule and the fallback when y holds one class only.

    Returns:
        A threshold in [0, 1]; a patient is predicted positive when ``prob >= threshold``.
    """
    y, prob = _as_arrays(y, prob, "binary")
    if rule == "fixed" or len(np.unique(y)) < 2:
        return float(fixed)
    if rule == "youden":
        fpr, tpr, thresholds = roc_curve(y, prob)
        return float(min(thresholds[int(np.argmax(tpr - fpr))], 1.0))
    if rule == "f1":
        precision, recall, thresholds = precision_recall_curve(y, prob)
        f1 = _div(2 * precision[:-1] * recall[:-1], precision[:-1] + recall[:-1])
        return float(thresholds[int(np.nanargmax(f1))])
    raise ValueError(f"unknown threshold rule {rule!r}; expected youden, f1 or fixed")


def classification_metrics(
    y: np.ndarray, prob: np.ndarray, threshold: float | None = None, task: Task = "binary"
) -> dict[str, float]:
    """Discrimination, threshold and calibration metrics of one set of predictions.

    Args:
        y: true class indices, shape ``(n,)``.
        prob: binary: positive-class probability ``(n,)``; multiclass: class probabilities ``(n, K)``.
        threshold: binary decision threshold (``None`` = 0.5); multiclass predicts the argmax.
        task: ``binary`` or ``multiclass``.

    Returns:
        ``auroc, auprc, balanced_accuracy, f1, sensitivity, specificity, accuracy, brier, ece, log_loss``
        (macro averages for multiclass; AUROC one-vs-rest). Undefined metrics are NaN.
    """
    y, prob = _as_arrays(y, prob, task)
    values = _scorer(task, y, prob, threshold, None, None)(np.ones((1, len(y))))
    return {name: float(v[0]) for name, v in values.items()}


def _bootstrap_indices(n: int, n_boot: int, rng: np.random.Generator, strata: np.ndarray | None = None) -> np.ndarray:
    """Patient indices of ``n_boot`` resamples ``(n_boot, n)``; stratified keeps each stratum's size."""
    if strata is None:
        return rng.integers(0, n, size=(n_boot, n))
    idx = np.empty((n_boot, n), dtype=np.int64)
    start = 0
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        idx[:, start : start + len(members)] = members[rng.integers(0, len(members), size=(n_boot, len(members)))]
        start += len(members)
    return idx


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each patient is drawn in each resample: ``(resamples, n)`` float weights."""
    rows = idx.shape[0]
    flat = (idx + n * np.arange(rows)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(float)


def _percentile_ci(values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return (float(lo), float(hi))


def bootstrap_ci(
    metric_fn: Callable[..., float],
    *arrays: np.ndarray,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    stratify: np.ndarray | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of any metric, resampling patients (rows of every array together).

    Resamples where ``metric_fn`` is NaN (e.g. a class is missing) are skipped. This generic version calls
    ``metric_fn`` once per resample; :func:`bootstrap_all` is the vectorised one for the built-in metrics.

    Args:
        metric_fn: ``metric_fn(*resampled_arrays) -> float``.
        arrays: arrays sharing the patient axis 0.
        n_boot: number of resamples.
        level: coverage of the interval, e.g. 0.95.
        seed: seed of the resampling.
        stratify: optional labels; resampling within each label keeps class sizes fixed.

    Returns:
        ``(lo, hi)``; ``(nan, nan)`` when no resample gives a finite value.
    """
    arrays = tuple(np.asarray(a) for a in arrays)
    idx = _bootstrap_indices(len(arrays[0]), n_boot, np.random.default_rng(seed), stratify)
    values = np.array([metric_fn(*(a[i] for a in arrays)) for i in idx], dtype=float)
    return _percentile_ci(values, level)


def _resampled_metrics(
    task: Task,
    y: np.ndarray,
    prob: np.ndarray,
    n_boot: int,
    seed: int,
    threshold: float | None = None,
    time: np.ndarray | None = None,
    horizon: float | None = None,
    others: Sequence[np.ndarray] = (),
    other_thresholds: Sequence[float | None] = (),
) -> list[dict[str, np.ndarray]]:
    """Metrics of ``prob`` (and of each of ``others``, on the same resamples) for every valid resample.

    A resample is valid when it holds every class of ``y`` (survival: at least one event). Resamples are drawn
    block by block, so memory stays O(block · n) whatever ``n_boot`` is; the draws equal one ``(n_boot, n)`` draw.
    """
    n = len(y)
    rng = np.random.default_rng(seed)
    needed = np.array([1]) if task == "survival" else np.unique(y)
    models = [(prob, threshold), *zip(others, other_thresholds, strict=True)]
    scorers = [_scorer(task, y, p, thr, time, horizon) for p, thr in models]
    chunks: list[list[dict[str, np.ndarray]]] = [[] for _ in models]
    block = max(1, _BLOCK_CELLS // max(n, 1))
    for start in range(0, n_boot, block):
        w = _counts(_bootstrap_indices(n, min(block, n_boot - start), rng), n)
        valid = np.ones(w.shape[0], dtype=bool)
        for cls in needed:
            valid &= w[:, y == cls].sum(axis=1) > 0
        w = w[valid]
        for out, score in zip(chunks, scorers, strict=True):
            out.append(score(w))
    return [{k: np.concatenate([c[k] for c in out]) for k in out[0]} for out in chunks]


def bootstrap_all(
    y: np.ndarray,
    prob: np.ndarray,
    threshold: float | None,
    task: Task,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    time: np.ndarray | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of every metric, resampling patients (vectorised over resamples).

    Args:
        y: class indices, or the event indicator for survival, shape ``(n,)``.
        prob: as in :func:`classification_metrics`; the risk score for survival.
        threshold: binary decision threshold (fixed, as chosen on validation data).
        task: ``binary``, ``multiclass`` or ``survival``.
        n_boot: number of resamples; resamples lacking a class (survival: lacking an event) are skipped.
        level: coverage, e.g. 0.95.
        seed: seed of the resampling.
        time: follow-up times (survival only); the AUC horizon stays the full-data median.

    Returns:
        ``{metric: (lo, hi)}`` with the keys of :func:`classification_metrics` (survival: ``c_index``,
        ``uno_c``, ``td_auc``, ``ibs``).
    """
    y, prob = _as_arrays(y, prob, task)
    if n_boot <= 0:
        return {}
    time_arr = None if time is None else np.asarray(time, dtype=float).reshape(-1)
    horizon = None if time_arr is None else default_horizon(time_arr)
    values = _resampled_metrics(task, y, prob, n_boot, seed, threshold, time_arr, horizon)[0]
    return {name: _percentile_ci(v, level) for name, v in values.items()}


def paired_bootstrap_test(
    y: np.ndarray,
    prob_a: np.ndarray,
    prob_b: np.ndarray,
    metric: str = "auroc",
    n_boot: int = 1000,
    seed: int = 0,
    task: Task = "binary",
    level: float = 0.95,
    threshold_a: float | None = None,
    threshold_b: float | None = None,
    time: np.ndarray | None = None,
) -> dict[str, float]:
    """Compare two models on the same patients with a paired bootstrap (same resamples for both).

    Args:
        y: class indices (survival: event indicator), shape ``(n,)``.
        prob_a: predictions of model A (as in :func:`classification_metrics`; survival: risk).
        prob_b: predictions of model B.
        metric: metric name, e.g. ``auroc`` or, for survival, ``c_index``.
        n_boot: number of resamples.
        seed: seed of the resampling.
        task: ``binary``, ``multiclass`` or ``survival``.
        level: coverage of the interval of the difference.
        threshold_a: binary threshold of model A (``None`` = 0.5).
        threshold_b: binary threshold of model B.
        time: follow-up times (survival only).

    Returns:
        ``diff`` (A - B on all patients), ``ci_low``, ``ci_high`` and the two-sided ``p_value``
        ``2 * min(P(d <= 0), P(d >= 0))`` over resampled differences, floored at ``1 / (valid + 1)``.
    """
    y, prob_a = _as_arrays(y, prob_a, task)
    _, prob_b = _as_arrays(y, prob_b, task)
    time_arr = None if time is None else np.asarray(time, dtype=float).reshape(-1)
    horizon = None if time_arr is None else default_horizon(time_arr)
    ones = np.ones((1, len(y)))
    full_a = _scorer(task, y, prob_a, threshold_a, time_arr, horizon)(ones)
    if metric not in full_a:
        raise ValueError(f"unknown metric {metric!r}; expected one of {sorted(full_a)}")
    full_b = _scorer(task, y, prob_b, threshold_b, time_arr, horizon)(ones)
    diff = float(full_a[metric][0] - full_b[metric][0])
    res_a, res_b = _resampled_metrics(
        task, y, prob_a, n_boot, seed, threshold_a, time_arr, horizon, [prob_b], [threshold_b]
    )
    d = res_a[metric] - res_b[metric]
    d = d[np.isfinite(d)]
    if d.size == 0:
        return {"diff": diff, "ci_low": float("nan"), "ci_high": float("nan"), "p_value": float("nan")}
    lo, hi = _percentile_ci(d, level)
    p = 2 * min(np.mean(d <= 0), np.mean(d >= 0))
    return {"diff": diff, "ci_low": lo, "ci_high": hi, "p_value": float(min(1.0, max(p, 1 / (d.size + 1))))}


def summarise_folds(folds: Sequence[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and sample standard deviation (ddof=1) of each metric over folds, ignoring NaN folds.

    Args:
        folds: one ``{metric: value}`` per fold.

    Returns:
        ``(mean, sd)`` dicts over the union of metric names; sd is NaN with fewer than two finite folds.
    """
    names = list(dict.fromkeys(k for fold in folds for k in fold))
    mean: dict[str, float] = {}
    sd: dict[str, float] = {}
    for name in names:
        values = np.array([fold.get(name, np.nan) for fold in folds], dtype=float)
        values = values[np.isfinite(values)]
        mean[name] = float(values.mean()) if values.size else float("nan")
        sd[name] = float(values.std(ddof=1)) if values.size > 1 else float("nan")
    return mean, sd


def calibration_intercept_slope(y: np.ndarray, prob: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """Calibration-in-the-large (intercept with the logit as offset) and the calibration slope.

    Both are logistic recalibration fits of the outcome on ``logit(prob)`` (Newton-Raphson): a well calibrated
    model has intercept 0 and slope 1; slope < 1 means predictions too extreme (overfitting).

    Args:
        y: binary outcomes ``(n,)``; prob: predicted positive-class probabilities ``(n,)``.
        iterations: Newton steps (converges in a handful for non-separable data).

    Returns:
        ``(intercept, slope)``; NaN when ``y`` holds one class only.
    """
    y = np.asarray(y, dtype=float).reshape(-1)
    p = np.clip(np.asarray(prob, dtype=float).reshape(-1), 1e-12, 1 - 1e-12)
    if len(np.unique(y)) < 2:
        return float("nan"), float("nan")
    logit = np.log(p / (1 - p))

    def fit(design: np.ndarray, offset: np.ndarray) -> np.ndarray:
        beta = np.zeros(design.shape[1])
        for _ in range(iterations):
            mu = 1.0 / (1.0 + np.exp(-(design @ beta + offset)))
            hessian = design.T @ (design * (mu * (1 - mu))[:, None]) + 1e-10 * np.eye(design.shape[1])
            step = np.linalg.solve(hessian, design.T @ (y - mu))
            beta += step
            if np.abs(step).max() < 1e-10:
                break
        return beta

    ones = np.ones((len(y), 1))
    intercept = fit(ones, logit)[0]
    slope = fit(np.column_stack([ones, logit]), np.zeros(len(y)))[1]
    return float(intercept), float(slope)
