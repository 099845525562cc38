"""Calibration as clinical papers report it: a reliability diagram, calibration intercept and slope, decision curves.

One binning everywhere: the reliability diagram uses the same ``ECE_BINS`` equal-width bins of predicted
probability as the ECE of the metrics table (:mod:`clinfuse.training.metrics`), so the figure and the number
describe the same groups of patients. Binary tasks calibrate P(positive); multiclass tasks the top-label
confidence against "prediction correct", which is what their ECE measures.

Calibration intercept (calibration-in-the-large) and slope follow Van Calster et al. (2019): logistic
regression of the outcome on logit(p), the slope with logit(p) as the covariate, the intercept with logit(p)
as a fixed offset; the CIs are Wald intervals. Decision curves follow Vickers & Elkin (2006): net benefit
``TP/n − FP/n · t/(1−t)`` at threshold probability ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from scipy.special import expit, logit
from scipy.stats import norm

from clinfuse.training.metrics import ECE_BINS

_EPS = 1e-6


@dataclass(frozen=True)
class Recalibration:
    """Calibration intercept and slope with Wald confidence intervals (NaN where the fit does not converge).

    Args:
        intercept: calibration-in-the-large (0 is ideal; > 0: predictions too low on average).
        intercept_ci: ``(low, high)``.
        slope: calibration slope (1 is ideal; < 1: predictions too extreme, typical of overfitting).
        slope_ci: ``(low, high)``.
        level: the confidence level of the intervals.
    """

    intercept: float
    intercept_ci: tuple[float, float]
    slope: float
    slope_ci: tuple[float, float]
    level: float


def bin_index(prob: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """The equal-width bin of each probability, exactly as the ECE assigns it (``(n,)`` ints in ``[0, bins)``)."""
    return np.clip((np.asarray(prob, dtype=float) * bins).astype(int), 0, bins - 1)


def reliability(outcome: np.ndarray, prob: np.ndarray, bins: int = ECE_BINS) -> tuple[np.ndarray, ...]:
    """Mean predicted probability, observed fraction and patient count per non-empty equal-width bin.

    Args:
        outcome: 0/1 outcome, shape ``(n,)``.
        prob: predicted probability of the outcome, shape ``(n,)``.
        bins: number of equal-width bins over [0, 1].

    Returns:
        ``(predicted, observed, counts)``, each of shape ``(non-empty bins,)``.
    """
    index = bin_index(prob, bins)
    counts = np.bincount(index, minlength=bins)
    kept = counts > 0
    predicted = np.bincount(index, weights=prob, minlength=bins)[kept] / counts[kept]
    observed = np.bincount(index, weights=outcome, minlength=bins)[kept] / counts[kept]
    return predicted, observed, counts[kept]


def _logistic_fit(outcome: np.ndarray, covariate: np.ndarray | None, offset: np.ndarray) -> tuple[np.ndarray, ...]:
    """Newton-Raphson logistic regression; returns coefficients and their standard errors (NaN if it fails)."""
    columns = [np.ones_like(offset)] + ([covariate] if covariate is not None else [])
    x = np.column_stack(columns)
    beta = np.zeros(x.shape[1])
    for _ in range(100):
        mu = expit(x @ beta + offset)
        hessian = x.T @ (x * (mu * (1 - mu))[:, None])
        try:
            step = np.linalg.solve(hessian, x.T @ (outcome - mu))
        except np.linalg.LinAlgError:
            return np.full(x.shape[1], np.nan), np.full(x.shape[1], np.nan)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    else:  # no convergence: (quasi-)separation, the estimate runs off to infinity
        return np.full(x.shape[1], np.nan), np.full(x.shape[1], np.nan)
    mu = expit(x @ beta + offset)
    hessian = x.T @ (x * (mu * (1 - mu))[:, None])
    try:
        se = np.sqrt(np.diag(np.linalg.inv(hessian)))
    except np.linalg.LinAlgError:
        se = np.full(x.shape[1], np.nan)
    return beta, se


def recalibration(outcome: np.ndarray, prob: np.ndarray, level: float = 0.95) -> Recalibration:
    """Calibration intercept and slope of predictions ``prob`` of a 0/1 ``outcome`` (both ``(n,)``)."""
    outcome = np.asarray(outcome, dtype=float)
    lp = logit(np.clip(np.asarray(prob, dtype=float), _EPS, 1 - _EPS))
    z = float(norm.ppf(0.5 + level / 2))
    (intercept,), (intercept_se,) = _logistic_fit(outcome, None, lp)
    (_, slope), (_, slope_se) = _logistic_fit(outcome, lp, np.zeros_like(lp))
    return Recalibration(
        intercept=float(intercept),
        intercept_ci=(float(intercept - z * intercept_se), float(intercept + z * intercept_se)),
        slope=float(slope),
        slope_ci=(float(slope - z * slope_se), float(slope + z * slope_se)),
        level=level,
    )


def net_benefit(outcome: np.ndarray, prob: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Net benefit of treating when ``prob >= t``, and of treating everyone, at each threshold ``t``.

    Args:
        outcome: 0/1 outcome, shape ``(n,)``.
        prob: predicted probability, shape ``(n,)``.
        thresholds: threshold probabilities in (0, 1), shape ``(T,)``.

    Returns:
        ``(model, treat_all)``, each ``(T,)``; treating no one has net benefit 0.
    """
    outcome = np.asarray(outcome, dtype=bool)
    n = len(outcome)
    odds = thresholds / (1 - thresholds)
    treated = np.asarray(prob)[None, :] >= thresholds[:, None]
    tp = (treated & outcome[None, :]).sum(axis=1) / n
    fp = (treated & ~outcome[None, :]).sum(axis=1) / n
    prevalence = outcome.mean()
    return tp - fp * odds, prevalence - (1 - prevalence) * odds


def calibration_figure(outcome: np.ndarray, prob: np.ndarray, ece: float, label: str, decision: bool) -> Figure:
    """Reliability diagram (equal-width bins, patients per bin) and, when ``decision``, a decision curve.

    Args:
        outcome: 0/1 outcome, shape ``(n,)``.
        prob: predicted probability of the outcome, shape ``(n,)``.
        ece: the ECE of the same predictions (printed on the diagram).
        label: what ``prob`` is (e.g. ``P(malignant)`` or ``top-label confidence``).
        decision: add the decision-curve panel (binary tasks).
    """
    fig = Figure(figsize=(11 if decision else 5.6, 4.2), layout="constrained")
    axes = fig.subplots(1, 2 if decision else 1, squeeze=False)[0]
    ax = axes[0]
    predicted, observed, counts = reliability(outcome, prob)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8, label="perfect")
    ax.plot(predicted, observed, marker="o", color="#1f77b4", label=f"model (ECE {ece:.3f})")
    for x, y, count in zip(predicted, observed, counts, strict=True):
        ax.annotate(str(int(count)), (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    edges = np.linspace(0, 1, ECE_BINS + 1)
    ax.set_xticks(edges[::2])
    ax.set(
        title=f"Calibration ({ECE_BINS} equal-width bins; numbers: patients)",
        xlabel=f"Predicted {label}",
        ylabel="Observed fraction",
        xlim=(0, 1),
        ylim=(-0.02, 1.08),
    )
    ax.legend(fontsize=8, loc="upper left")
    if decision:
        thresholds = np.linspace(0.01, 0.99, 99)
        model, treat_all = net_benefit(outcome, prob, thresholds)
        prevalence = float(np.mean(outcome))
        dca = axes[1]
        dca.plot(thresholds, model, color="#1f77b4", label="model")
        dca.plot(thresholds, treat_all, color="#7f7f7f", linestyle="--", label="treat all")
        dca.axhline(0, color="black", linewidth=0.8, label="treat none")
        dca.set(
            title="Decision curve",
            xlabel="Threshold probability",
            ylabel="Net benefit",
            xlim=(0, 1),
            ylim=(-0.05 * max(prevalence, 0.1), 1.1 * max(prevalence, 0.05)),
        )
        dca.legend(fontsize=8, loc="upper right")
    return fig
