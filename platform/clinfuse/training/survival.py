"""Survival analysis pieces: the Cox partial-likelihood loss and the survival metrics.

The metrics (``survival_metrics`` is re-exported by ``training.metrics``) follow scikit-survival, with every
censoring distribution and baseline estimated on the evaluated patients themselves:

- ``c_index``: Harrell's C, as ``concordance_index_censored``;
- ``uno_c``: Uno's C, as ``concordance_index_ipcw`` with ``tau`` = the horizon (only pairs whose earlier
  time is before the horizon count, weighted by the inverse squared Kaplan-Meier censoring survival);
- ``td_auc``: the cumulative/dynamic AUC of Uno et al. at the horizon, as ``cumulative_dynamic_auc``;
- ``ibs``: the integrated Brier score (lower is better), as ``integrated_brier_score`` over ``IBS_POINTS``
  evenly spaced times from the first follow-up time to the horizon. The model outputs a Cox log-risk, not
  survival curves, so the survival probabilities come from a Breslow baseline cumulative hazard fitted on the
  evaluated patients' own risks and outcomes: the IBS judges how well the spread of the risks matches the
  outcomes given the best baseline for them, not a baseline the model never predicts.

Every metric takes a matrix of patient weights ``w`` of shape ``(resamples, n)`` (how often each patient is
drawn): one row of ones is the point estimate, a row of bootstrap counts is the metric on that resample.
:class:`SurvivalScorer` sorts the patients once; each weight row then costs O(n log n) time and O(n) memory
(the pair counts keep an O(n log n) index of sort orders, about 30 MB at 100,000 patients).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from clinfuse.concordance import TIED_TOL, ComparablePairs, TimeOrder, safe_div, suffix_sum

IBS_POINTS = 100


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


class SurvivalScorer:
    """The survival metrics of one set of predictions, for any number of patient-weight rows.

    Args:
        time: follow-up times, shape ``(n,)``.
        event: event indicators, shape ``(n,)``.
        risk: predicted log-risks (higher = earlier event), shape ``(n,)``.
        horizon: the time point of the AUC, the truncation of Uno's C and the end of the IBS integral.
        tied_tol: risks closer than this count as tied (one half), as in scikit-survival.
    """

    def __init__(
        self, time: np.ndarray, event: np.ndarray, risk: np.ndarray, horizon: float, *, tied_tol: float = TIED_TOL
    ) -> None:
        self.time = np.asarray(time, dtype=float).reshape(-1)
        self.event = np.asarray(event).astype(bool).reshape(-1)
        self.risk = np.asarray(risk, dtype=float).reshape(-1)
        self.horizon = float(horizon)
        # Without events, or with a NaN/inf risk or time (a diverged model), every metric is undefined: __call__
        # and td_auc answer NaN before using the sorted structures, which are not built.
        self._undefined = not (self.event.any() and np.isfinite(self.risk).all() and np.isfinite(self.time).all())
        if self._undefined:
            return
        self._order = TimeOrder(self.time, self.event)
        self._pairs = ComparablePairs(self._order, self.risk, tied_tol)
        # The AUC sorts risks descending and, like scikit-survival, merges runs whose neighbours are tied.
        self._by_risk = np.argsort(-self.risk, kind="stable")
        sorted_risk = self.risk[self._by_risk]
        self._risk_starts = np.flatnonzero(np.r_[True, np.abs(np.diff(sorted_risk)) > tied_tol])
        # exp(risk - max) keeps the Breslow sums finite; survival probabilities do not depend on the shift.
        self._relative_hazard = np.exp(self.risk - self.risk.max())[self._order.order]

    def __call__(self, w: np.ndarray) -> dict[str, np.ndarray]:
        """``c_index``, ``uno_c``, ``td_auc`` and ``ibs`` for each row of ``w`` ``(resamples, n)``.

        Returns:
            One array of shape ``(resamples,)`` per metric; NaN where the metric is undefined.
        """
        w = np.atleast_2d(np.asarray(w, dtype=float))
        rows = w.shape[0]
        if self._undefined:
            return {name: np.full(rows, np.nan) for name in ("c_index", "uno_c", "td_auc", "ibs")}
        censoring = self._order.censoring_survival(w)
        g_own = censoring[:, self._order.group]
        lower, tied, comparable = self._pairs.sums(w)
        events = self._pairs.events
        w_events = w[:, events]
        concordant = lower + 0.5 * tied
        c_index = safe_div((w_events * concordant).sum(axis=1), (w_events * comparable).sum(axis=1))
        g_events = g_own[:, events]
        early = self.time[events] < self.horizon
        # A drawn early event with G(t_i) = 0 would need an infinite weight (scikit-survival raises there).
        undefined = ((w_events > 0) & early & (g_events <= 0)).any(axis=1)
        ipcw = np.where(early, safe_div(w_events, g_events**2, fill=0.0), 0.0)
        uno_c = safe_div((ipcw * concordant).sum(axis=1), (ipcw * comparable).sum(axis=1))
        uno_c[undefined] = np.nan
        return {
            "c_index": c_index,
            "uno_c": uno_c,
            "td_auc": self.td_auc(w, self.horizon, g_own),
            "ibs": self._ibs(w, censoring),
        }

    def td_auc(self, w: np.ndarray, horizon: float, g_own: np.ndarray | None = None) -> np.ndarray:
        """Cumulative/dynamic AUC at ``horizon`` per weight row: a weighted Mann-Whitney over sorted risks.

        Cases had the event by ``horizon`` (weight 1/G(t_i)); controls are still event-free after it.

        Args:
            w: patient weights, shape ``(resamples, n)``.
            horizon: the time point t of AUC(t).
            g_own: censoring survival at each patient's own time ``(resamples, n)``, if already computed.
        """
        w = np.atleast_2d(np.asarray(w, dtype=float))
        case = (self.time <= horizon) & self.event
        control = self.time > horizon
        if self._undefined or not case.any() or not control.any():
            return np.full(w.shape[0], np.nan)
        if g_own is None:
            g_own = self._order.censoring_survival(w)[:, self._order.group]
        undefined = ((w > 0) & case & (g_own <= 0)).any(axis=1)
        case_w = np.where(case, safe_div(w, g_own, fill=0.0), 0.0)
        cases = np.add.reduceat(case_w[:, self._by_risk], self._risk_starts, axis=1)
        controls = np.add.reduceat((w * control)[:, self._by_risk], self._risk_starts, axis=1)
        n_controls = controls.sum(axis=1)
        # Risks descend, so the controls ranked below a group are those of the later groups.
        below = n_controls[:, None] - np.cumsum(controls, axis=1)
        auc = safe_div((cases * (below + 0.5 * controls)).sum(axis=1), cases.sum(axis=1) * n_controls)
        auc[undefined] = np.nan
        return auc

    def _ibs(self, w: np.ndarray, censoring: np.ndarray) -> np.ndarray:
        """Integrated Brier score per weight row, with Breslow survival curves fitted on the same weights."""
        rows = w.shape[0]
        order = self._order
        start = order.time[0]
        if self.horizon <= start:
            return np.full(rows, np.nan)
        grid = np.linspace(start, self.horizon, IBS_POINTS)
        w_sorted = w[:, order.order]
        events = w_sorted * order.event
        deaths = order.group_sums(events)
        at_risk = suffix_sum(order.group_sums(w_sorted * self._relative_hazard))
        hazard = np.cumsum(safe_div(deaths, at_risk, fill=0.0), axis=1)
        at_grid = order.index_at(grid)  # >= 0: the grid starts at the first time
        hazard_grid = hazard[:, at_grid]
        # scikit-survival gives a zero censoring survival an infinite inverse weight, i.e. weight 0.
        control_w = safe_div(1.0, censoring[:, at_grid], fill=0.0)
        event_cols = np.flatnonzero(order.event)
        case_w = safe_div(events[:, event_cols], censoring[:, order.group_sorted[event_cols]], fill=0.0)
        case_hazard = self._relative_hazard[event_cols]
        n_cases = np.searchsorted(order.time[event_cols], grid, side="right")
        n_past = np.searchsorted(order.time, grid, side="right")
        brier = np.empty((rows, IBS_POINTS))
        for k in range(IBS_POINTS):
            h = hazard_grid[:, k : k + 1]
            survival_sq = np.exp(-2.0 * h * case_hazard[: n_cases[k]])
            case_part = (case_w[:, : n_cases[k]] * survival_sq).sum(axis=1)
            died = np.expm1(-h * self._relative_hazard[n_past[k] :]) ** 2
            brier[:, k] = case_part + (w_sorted[:, n_past[k] :] * died).sum(axis=1) * control_w[:, k]
        brier = safe_div(brier, w.sum(axis=1)[:, None])
        area = (0.5 * (brier[:, 1:] + brier[:, :-1]) * np.diff(grid)).sum(axis=1)
        ibs = area / (grid[-1] - grid[0])
        ibs[deaths.sum(axis=1) <= 0] = np.nan
        return ibs


def concordance_index_weighted(time: np.ndarray, event: np.ndarray, risk: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Harrell's C-index for each row of weights ``w`` ``(resamples, n)``; NaN where no pair is comparable."""
    return SurvivalScorer(time, event, risk, default_horizon(time))(w)["c_index"]


def cumulative_dynamic_auc_weighted(
    time: np.ndarray, event: np.ndarray, risk: np.ndarray, horizon: float, w: np.ndarray
) -> np.ndarray:
    """Cumulative/dynamic AUC at ``horizon`` for each row of ``w`` ``(resamples, n)``; NaN if undefined."""
    return SurvivalScorer(time, event, risk, horizon).td_auc(w, horizon)


def concordance_index(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C-index (ties as in scikit-survival's ``concordance_index_censored``); NaN if undefined."""
    return float(concordance_index_weighted(time, event, risk, np.ones((1, len(time))))[0])


def cumulative_dynamic_auc(time: np.ndarray, event: np.ndarray, risk: np.ndarray, horizon: float) -> float:
    """Uno's cumulative/dynamic AUC at ``horizon`` with Kaplan-Meier censoring weights; NaN if undefined."""
    return float(cumulative_dynamic_auc_weighted(time, event, risk, horizon, np.ones((1, len(time))))[0])


def survival_metrics_weighted(
    time: np.ndarray, event: np.ndarray, risk: np.ndarray, w: np.ndarray, horizon: float
) -> dict[str, np.ndarray]:
    """``c_index``, ``uno_c``, ``td_auc`` and ``ibs`` (at ``horizon``) for each row of ``w`` ``(resamples, n)``."""
    return SurvivalScorer(time, event, risk, horizon)(w)


def default_horizon(time: np.ndarray) -> float:
    """The median follow-up time: the default horizon of the time-dependent metrics (NaN without patients)."""
    time = np.asarray(time, dtype=float)
    return float(np.median(time)) if time.size else float("nan")


def survival_metrics(
    time: np.ndarray, event: np.ndarray, risk: np.ndarray, horizons: Sequence[float] | None = None
) -> dict[str, float]:
    """Harrell's and Uno's C, the cumulative/dynamic AUC and the integrated Brier score.

    Args:
        time: follow-up times, shape ``(n,)``.
        event: event indicators, shape ``(n,)``.
        risk: predicted log-risks (higher = earlier event), shape ``(n,)``.
        horizons: time points of the AUC; ``None`` uses the median follow-up time. The first one also
            truncates Uno's C and ends the IBS integral.

    Returns:
        ``c_index``, ``uno_c``, ``td_auc`` (at the first horizon), ``ibs``, ``horizon`` (that time point),
        and ``td_auc_t<h>`` for every horizon when several are given. Undefined metrics are NaN.
    """
    time = np.asarray(time, dtype=float).reshape(-1)
    points = [default_horizon(time)] if horizons is None else [float(h) for h in horizons]
    scorer = SurvivalScorer(time, event, risk, points[0])
    ones = np.ones((1, len(time)))
    result = {name: float(v[0]) for name, v in scorer(ones).items()}
    result["horizon"] = points[0]
    if len(points) > 1:
        result.update({f"td_auc_t{h:g}": float(scorer.td_auc(ones, h)[0]) for h in points})
    return result


def breslow_baseline(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Breslow's estimate of the baseline cumulative hazard of a Cox model.

    Args:
        time: follow-up times ``(n,)``; event: event indicators ``(n,)``; risk: log relative hazards ``(n,)``.

    Returns:
        The distinct event times (ascending) and the cumulative baseline hazard at each,
        ``H0(t) = sum over event times s <= t of d(s) / sum_{j: T_j >= s} exp(risk_j)``.
    """
    time = np.asarray(time, dtype=float).reshape(-1)
    event = np.asarray(event).astype(bool).reshape(-1)
    risk = np.asarray(risk, dtype=float).reshape(-1)
    # Centring keeps exp() finite; the baseline is then relative to the mean risk, and survival_probability
    # receives the same shift through the stored offset.
    hazard = np.exp(risk - risk.mean())
    times = np.unique(time[event])
    deaths = np.array([event[time == t].sum() for t in times], dtype=float)
    order = np.argsort(time)
    at_risk_sum = np.cumsum(hazard[order][::-1])[::-1]
    first = np.searchsorted(time[order], times, side="left")
    increments = deaths / at_risk_sum[first]
    return times, np.cumsum(increments) * np.exp(-risk.mean())


def survival_probability(
    times: Sequence[float], cumhaz: Sequence[float], risk: np.ndarray, horizons: Sequence[float]
) -> np.ndarray:
    """``S(h | x) = exp(-H0(h) exp(risk))`` ``(n, len(horizons))`` from :func:`breslow_baseline`'s step function."""
    times_arr, cumhaz_arr = np.asarray(times, dtype=float), np.asarray(cumhaz, dtype=float)
    steps = np.searchsorted(times_arr, np.asarray(horizons, dtype=float), side="right")
    at = np.where(steps > 0, cumhaz_arr[np.maximum(steps - 1, 0)], 0.0)
    return np.exp(-np.outer(np.exp(np.asarray(risk, dtype=float).reshape(-1)), at))
