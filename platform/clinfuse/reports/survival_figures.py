"""Survival as clinical papers show it: Kaplan-Meier by predicted risk group, numbers at risk, log-rank, AUC(t).

Patients are split into risk groups at quantiles of the predicted log-risk (tertiles by default). Each group's
Kaplan-Meier curve comes with its pointwise 95% band (scikit-survival, ``conf_type="log-log"``); the table
under the plot counts the patients still at risk at each time tick; the log-rank test
(``sksurv.compare.compare_survival``) compares the groups. The time-dependent AUC is the cumulative/dynamic
AUC of :mod:`clinfuse.training.survival` (the same estimator as ``td_auc`` in the metrics table) over a grid of
horizons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sksurv.compare import compare_survival
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv

from clinfuse.training.survival import cumulative_dynamic_auc, default_horizon

_GROUP_COLOURS = ("#2471a3", "#d4ac0d", "#c0392b", "#7d3c98", "#117864")


@dataclass(frozen=True)
class RiskGroups:
    """Patients split at quantiles of predicted risk, and the log-rank test between the groups.

    Args:
        names: group names, lowest risk first.
        group: group index of each patient, shape ``(n,)``.
        chisq: the log-rank statistic (NaN when fewer than two groups have patients or no event occurred).
        p_value: its p-value (``len(names) − 1`` degrees of freedom).
    """

    names: list[str]
    group: np.ndarray
    chisq: float
    p_value: float


def risk_groups(risk: np.ndarray, time: np.ndarray, event: np.ndarray, n_groups: int = 3) -> RiskGroups:
    """Split patients into ``n_groups`` groups at quantiles of ``risk`` and run the log-rank test.

    Args:
        risk: predicted log-risk, shape ``(n,)``.
        time: follow-up times, shape ``(n,)``.
        event: 1 event, 0 censored, shape ``(n,)``.
        n_groups: 3 gives tertiles (low, intermediate, high risk).
    """
    names = (
        ["low risk", "intermediate risk", "high risk"]
        if n_groups == 3
        else [f"risk group {k + 1}" for k in range(n_groups)]
    )
    cuts = np.quantile(risk, np.arange(1, n_groups) / n_groups)
    group = np.searchsorted(cuts, risk, side="right")
    chisq, p_value = np.nan, np.nan
    if len(np.unique(group)) > 1 and np.asarray(event).any():
        outcome = Surv.from_arrays(np.asarray(event).astype(bool), np.asarray(time, dtype=float))
        chisq, p_value = compare_survival(outcome, group)
    return RiskGroups(names, group, float(chisq), float(p_value))


def _at_risk(time: np.ndarray, ticks: np.ndarray) -> list[int]:
    return [int((time >= t).sum()) for t in ticks]


def kaplan_meier_figure(risk: np.ndarray, time: np.ndarray, event: np.ndarray, groups: RiskGroups) -> Figure:
    """Kaplan-Meier curves with 95% bands per risk group and a numbers-at-risk table under the plot.

    Args:
        risk: predicted log-risk, shape ``(n,)``.
        time: follow-up times, shape ``(n,)``.
        event: 1 event, 0 censored, shape ``(n,)``.
        groups: the groups of :func:`risk_groups`.
    """
    n_groups = len(groups.names)
    fig = Figure(figsize=(7.5, 4.6 + 0.28 * n_groups), layout="constrained")
    ax, table = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [4.2, 0.3 * n_groups + 0.5]})
    end = float(np.max(time)) if len(time) else 1.0
    for k, name in enumerate(groups.names):
        mask = groups.group == k
        if not mask.any():
            continue
        colour = _GROUP_COLOURS[k % len(_GROUP_COLOURS)]
        steps_t, steps_s, band = kaplan_meier_estimator(
            event[mask].astype(bool), time[mask].astype(float), conf_type="log-log"
        )
        # Start every curve at (0, 1) so groups are comparable from the origin.
        t = np.concatenate([[0.0], steps_t])
        s = np.concatenate([[1.0], steps_s])
        low = np.concatenate([[1.0], band[0]])
        high = np.concatenate([[1.0], band[1]])
        ax.step(
            t, s, where="post", color=colour, label=f"{name} (n={int(mask.sum())}, events={int(event[mask].sum())})"
        )
        ax.fill_between(t, low, high, step="post", color=colour, alpha=0.15, linewidth=0)
    p_text = "n/a" if np.isnan(groups.p_value) else ("< 0.001" if groups.p_value < 0.001 else f"{groups.p_value:.3f}")
    ax.set(
        title=f"Kaplan-Meier by predicted risk group (log-rank p = {p_text})",
        ylabel="Survival probability",
        ylim=(0, 1.02),
        # A little room left of 0 so the counts centred under t = 0 stay clear of the group names.
        xlim=(-0.05 * end, end * 1.02),
    )
    ax.legend(fontsize=8, loc="lower left")
    ax.xaxis.set_major_locator(MaxNLocator(6))
    ticks = [t for t in ax.get_xticks() if 0 <= t <= end * 1.02]
    table.set_ylim(-0.5, n_groups - 0.5)
    table.invert_yaxis()
    table.set_yticks(range(n_groups), groups.names, fontsize=8)
    for k in range(n_groups):
        counts = _at_risk(time[groups.group == k], np.asarray(ticks))
        for t, count in zip(ticks, counts, strict=True):
            table.text(t, k, str(count), ha="center", va="center", fontsize=8, color=_GROUP_COLOURS[k % 5])
    table.tick_params(axis="y", length=0)
    for side in ("top", "right", "left"):
        table.spines[side].set_visible(False)
    table.set_xlabel("Time (numbers at risk by group)")
    return fig


def td_auc_figure(risk: np.ndarray, time: np.ndarray, event: np.ndarray, points: int = 20) -> Figure | None:
    """The cumulative/dynamic AUC at horizons from the 10th to the 90th percentile of event times.

    Args:
        risk: predicted log-risk, shape ``(n,)``.
        time: follow-up times, shape ``(n,)``.
        event: 1 event, 0 censored, shape ``(n,)``.
        points: how many horizons.

    Returns:
        The figure, or ``None`` when fewer than two events make the curve undefined.
    """
    event_times = np.asarray(time)[np.asarray(event) == 1]
    if len(event_times) < 2:
        return None
    horizons = np.unique(np.quantile(event_times, np.linspace(0.1, 0.9, points)))
    auc = np.array([cumulative_dynamic_auc(time, event, risk, float(h)) for h in horizons])
    fig = Figure(figsize=(5.6, 3.8), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(horizons, auc, marker="o", markersize=3, color="#1f3a5f")
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=0.8, label="chance")
    ax.axvline(default_horizon(time), color="#c0392b", linestyle=":", linewidth=1, label="horizon of td_auc")
    ax.set(title="Time-dependent AUC (cumulative/dynamic)", xlabel="Time", ylabel="AUC(t)", ylim=(0, 1.02))
    ax.legend(fontsize=8, loc="lower right")
    return fig
