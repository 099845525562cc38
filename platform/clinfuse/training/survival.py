"""Survival analysis pieces: the Cox partial-likelihood loss and the discrimination metrics.

The metrics (C-index, time-dependent AUC; ``survival_metrics`` is re-exported by ``training.metrics``)
are written for a matrix of bootstrap weights ``w`` of shape ``(resamples, n)`` (how often each patient is
drawn), so one definition serves the point estimate (a single row of ones) and every bootstrap resample at
once. Definitions follow scikit-survival: Harrell's C-index as ``concordance_index_censored`` and the
cumulative/dynamic AUC of Uno et al. as ``cumulative_dynamic_auc``, with Kaplan-Meier censoring weights
estimated on the evaluated patients themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

TIED_TOL = 1e-8


def cox_ph_loss(risk: Tensor, time: Tensor, event: Tensor) -> Tensor:
    """Negative Cox partial log-likelihood with Breslow ties, averaged over events.

    Args:
        risk: predicted log-risk, shape ``(batch,)`` (or ``(batch, 1)``).
        time: follow-up time, shape ``(batch,)``.
        event: 1 where the event was observed, 0 where censored, shape ``(batch,)``.

    Returns:
        A scalar tensor. A batch without events gives 0 that still carries a gradient (of zeros).
    """
    risk = risk.reshape(-1)
    time = time.reshape(-1).to(risk.device)
    event = event.reshape(-1).to(device=risk.device, dtype=risk.dtype)
    n_events = event.sum()
    if n_events.item() == 0:
        return (risk * 0.0).sum()
    order = torch.argsort(time, descending=True, stable=True)
    risk_sorted = risk[order]
    time_sorted = time[order]
    # Descending time: a cumulative log-sum-exp gives log sum over {j: t_j >= t_i}; under Breslow every member
    # of a tie group shares the risk set that ends at the group's last position.
    log_cum = torch.logcumsumexp(risk_sorted, dim=0)
    _, counts = torch.unique_consecutive(time_sorted, return_counts=True)
    group_end = torch.cumsum(counts, dim=0) - 1
    log_risk_set = log_cum[torch.repeat_interleave(group_end, counts)]
    log_lik = (risk_sorted - log_risk_set) * event[order]
    return -log_lik.sum() / n_events


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with NaN where the denominator is not positive (the metric is undefined there)."""
    out = np.full(np.broadcast_shapes(np.shape(num), np.shape(den)), np.nan)
    np.divide(num, den, out=out, where=np.asarray(den) > 0)
    return out


def _concordance_scores(risk_rows: np.ndarray, risk_cols: np.ndarray) -> np.ndarray:
    """1 where the row patient has the higher risk, 0.5 for ties (within ``TIED_TOL``), else 0."""
    diff = risk_rows[:, None] - risk_cols[None, :]
    return np.where(np.abs(diff) <= TIED_TOL, 0.5, (diff > 0).astype(float))


def concordance_index_weighted(time: np.ndarray, event: np.ndarray, risk: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Harrell's C-index for each row of bootstrap weights.

    A pair (i, j) is comparable when i had the event and either ``t_i < t_j``, or ``t_i == t_j`` and j was
    censored; it is concordant when ``risk_i > risk_j`` and counts one half when the risks tie.

    Args:
        time: follow-up times, shape ``(n,)``.
        event: event indicators, shape ``(n,)``.
        risk: predicted risks (higher = earlier event), shape ``(n,)``.
        w: patient weights, shape ``(resamples, n)``.

    Returns:
        The C-index per row, shape ``(resamples,)``; NaN where no pair is comparable.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    risk = np.asarray(risk, dtype=float)
    comparable = event[:, None] & (
        (time[:, None] < time[None, :]) | ((time[:, None] == time[None, :]) & ~event[None, :])
    )
    idx = np.flatnonzero(comparable.any(axis=1))
    if idx.size == 0:
        return np.full(w.shape[0], np.nan)
    comparable = comparable[idx].astype(float)
    concordant = comparable * _concordance_scores(risk[idx], risk)
    w_rows = w[:, idx]
    num = np.einsum("bi,bi->b", w_rows @ concordant, w)
    den = np.einsum("bi,bi->b", w_rows @ comparable, w)
    return _safe_div(num, den)


def _censoring_survival_at(time: np.ndarray, event: np.ndarray, w: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Kaplan-Meier estimate of the censoring survival G(t) at the times ``time[at]``, per weight row.

    Events at a time leave the risk set before the censorings at that time (scikit-survival's convention),
    and G is right-continuous, so G(t_i) includes censorings at t_i itself.
    """
    order = np.argsort(time, kind="mergesort")
    t_sorted = time[order]
    starts = np.flatnonzero(np.r_[True, t_sorted[1:] != t_sorted[:-1]])
    w_sorted = w[:, order]
    ev_sorted = event[order]
    n_events = np.add.reduceat(w_sorted * ev_sorted, starts, axis=1)
    n_censored = np.add.reduceat(w_sorted * ~ev_sorted, starts, axis=1)
    n_total = n_events + n_censored
    at_risk = np.cumsum(n_total[:, ::-1], axis=1)[:, ::-1]
    ratio = _safe_div(n_censored, at_risk - n_events)
    ratio = np.where(n_censored > 0, ratio, 0.0)
    surv = np.cumprod(1.0 - ratio, axis=1)
    group = np.searchsorted(t_sorted[starts], time[at])
    return surv[:, group]


def cumulative_dynamic_auc_weighted(
    time: np.ndarray, event: np.ndarray, risk: np.ndarray, horizon: float, w: np.ndarray
) -> np.ndarray:
    """Cumulative/dynamic AUC at ``horizon`` with inverse-probability-of-censoring weights, per weight row.

    Cases had the event by ``horizon`` (weighted by 1/G(t_i)); controls are still event-free after it.

    Args:
        time: follow-up times, shape ``(n,)``.
        event: event indicators, shape ``(n,)``.
        risk: predicted risks, shape ``(n,)``.
        horizon: the time point t of AUC(t), in the unit of ``time``.
        w: patient weights, shape ``(resamples, n)``.

    Returns:
        AUC(t) per row, shape ``(resamples,)``; NaN where there is no case or no control.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    risk = np.asarray(risk, dtype=float)
    cases = np.flatnonzero((time <= horizon) & event)
    controls = np.flatnonzero(time > horizon)
    if cases.size == 0 or controls.size == 0:
        return np.full(w.shape[0], np.nan)
    g = _censoring_survival_at(time, event, w, cases)
    w_cases = _safe_div(w[:, cases], g)
    # A drawn case with G(t_i) = 0 would need an infinite weight: the AUC is undefined for that resample.
    bad = ((w[:, cases] > 0) & ~np.isfinite(w_cases)).any(axis=1)
    w_cases = np.where(np.isfinite(w_cases), w_cases, 0.0)
    w_controls = w[:, controls]
    scores = _concordance_scores(risk[cases], risk[controls])
    num = np.einsum("bi,bi->b", w_cases @ scores, w_controls)
    den = w_cases.sum(axis=1) * w_controls.sum(axis=1)
    auc = _safe_div(num, den)
    auc[bad] = np.nan
    return auc


def concordance_index(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C-index (ties as in scikit-survival's ``concordance_index_censored``); NaN if undefined."""
    return float(concordance_index_weighted(time, event, risk, np.ones((1, len(time))))[0])


def cumulative_dynamic_auc(time: np.ndarray, event: np.ndarray, risk: np.ndarray, horizon: float) -> float:
    """Uno's cumulative/dynamic AUC at ``horizon`` with Kaplan-Meier censoring weights; NaN if undefined."""
    return float(cumulative_dynamic_auc_weighted(time, event, risk, horizon, np.ones((1, len(time))))[0])


def survival_metrics_weighted(
    time: np.ndarray, event: np.ndarray, risk: np.ndarray, w: np.ndarray, horizon: float
) -> dict[str, np.ndarray]:
    """``c_index`` and ``td_auc`` (at ``horizon``) for each row of weights ``w`` ``(resamples, n)``."""
    return {
        "c_index": concordance_index_weighted(time, event, risk, w),
        "td_auc": cumulative_dynamic_auc_weighted(time, event, risk, horizon, w),
    }


def default_horizon(time: np.ndarray) -> float:
    """The median follow-up time: the default horizon of the time-dependent AUC."""
    return float(np.median(np.asarray(time, dtype=float)))


def survival_metrics(
    time: np.ndarray, event: np.ndarray, risk: np.ndarray, horizons: Sequence[float] | None = None
) -> dict[str, float]:
    """Harrell's C-index and the cumulative/dynamic AUC with IPCW.

    Args:
        time: follow-up times, shape ``(n,)``.
        event: event indicators, shape ``(n,)``.
        risk: predicted risks (higher = earlier event), shape ``(n,)``.
        horizons: time points of the AUC; ``None`` uses the median follow-up time.

    Returns:
        ``c_index``, ``td_auc`` (at the first horizon), ``horizon`` (that time point), and
        ``td_auc_t<h>`` for every horizon when several are given. Undefined metrics are NaN.
    """
    time = np.asarray(time, dtype=float).reshape(-1)
    event = np.asarray(event).astype(np.int64).reshape(-1)
    risk = np.asarray(risk, dtype=float).reshape(-1)
    ones = np.ones((1, len(time)))
    points = [default_horizon(time)] if horizons is None else [float(h) for h in horizons]
    aucs = [float(cumulative_dynamic_auc_weighted(time, event, risk, h, ones)[0]) for h in points]
    result = {
        "c_index": float(concordance_index_weighted(time, event, risk, ones)[0]),
        "td_auc": aucs[0],
        "horizon": points[0],
    }
    if len(points) > 1:
        result.update({f"td_auc_t{h:g}": auc for h, auc in zip(points, aucs, strict=True)})
    return result
