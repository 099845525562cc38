"""Figures of the report, drawn with matplotlib's object API (no pyplot state, Agg canvas), embedded as PNG.

Every function takes plain arrays and returns a :class:`~matplotlib.figure.Figure`; :func:`to_png` renders it.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import auc, precision_recall_curve, roc_curve

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
_POSITIVE, _NEGATIVE = "#c0392b", "#2471a3"


# Points drawn per scatter at most: beyond that a scatter is a blot and only costs drawing time.
MAX_POINTS = 2000


def color_of(index: int) -> str:
    """The colour of the ``index``-th modality or class, the same in every figure."""
    return _PALETTE[index % len(_PALETTE)]


def to_png(fig: Figure, dpi: int = 110) -> bytes:
    """Render a figure to PNG bytes."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _new(width: float, height: float, ncols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def classification_curves(y: np.ndarray, prob: np.ndarray, classes: list[str]) -> Figure:
    """ROC, precision-recall and calibration curves (one-vs-rest per class when there are more than two).

    Args:
        y: true class indices, shape ``(n,)``.
        prob: predicted probabilities, shape ``(n, K)`` in class order.
        classes: class names in index order.
    """
    fig, (ax_roc, ax_pr, ax_cal) = _new(12, 3.8, 3)
    shown = [1] if len(classes) == 2 else list(range(len(classes)))
    for k in shown:
        truth = (y == k).astype(int)
        if truth.min() == truth.max():
            continue  # a class absent from the test set has no curve
        name = classes[k] if len(classes) > 2 else f"{classes[k]} (positive)"
        fpr, tpr, _ = roc_curve(truth, prob[:, k])
        ax_roc.plot(fpr, tpr, color=color_of(k), label=f"{name}: AUC {auc(fpr, tpr):.3f}")
        precision, recall, _ = precision_recall_curve(truth, prob[:, k])
        ax_pr.plot(recall, precision, color=color_of(k), label=name)
        ax_pr.axhline(truth.mean(), color=color_of(k), linestyle=":", linewidth=0.8)
        bins = max(2, min(10, len(truth) // 10))
        observed, predicted = calibration_curve(truth, prob[:, k], n_bins=bins, strategy="quantile")
        ax_cal.plot(predicted, observed, marker="o", color=color_of(k), label=name)
    ax_roc.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
    ax_cal.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8, label="perfect")
    ax_roc.set(title="ROC", xlabel="False positive rate", ylabel="True positive rate")
    ax_pr.set(title="Precision-recall (dotted: prevalence)", xlabel="Recall", ylabel="Precision")
    ax_cal.set(title="Calibration (quantile bins)", xlabel="Predicted probability", ylabel="Observed fraction")
    for ax in (ax_roc, ax_pr, ax_cal):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, loc="best")
    return fig


def _kaplan_meier(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier survival steps at the distinct event times, from (0, 1) to the last follow-up time.

    Sorted counts (O(n log n)): a registry's 10^5 distinct times would make a per-time scan quadratic.
    """
    distinct, inverse, counts = np.unique(time, return_inverse=True, return_counts=True)
    deaths = np.bincount(inverse, weights=event.astype(float), minlength=len(distinct))
    at_risk = len(time) - np.concatenate([[0], np.cumsum(counts)[:-1]])
    keep = deaths > 0
    times = distinct[keep]
    survival = np.cumprod(1.0 - deaths[keep] / at_risk[keep])
    last = survival[-1] if len(survival) else 1.0
    end = time.max() if len(time) else 0.0
    return np.concatenate([[0.0], times, [end]]), np.concatenate([[1.0], survival, [last]])


def survival_curves(risk: np.ndarray, event: np.ndarray, time: np.ndarray | None) -> Figure:
    """Risk distribution by event status and, when times are known, Kaplan-Meier curves split at median risk.

    Args:
        risk: predicted log-risk, shape ``(n,)``.
        event: event indicator (1 event, 0 censored), shape ``(n,)``.
        time: follow-up times, shape ``(n,)``, or ``None``.
    """
    fig, axes = _new(10 if time is not None else 5.5, 3.6, 2 if time is not None else 1)
    bins = np.histogram_bin_edges(risk, bins=min(20, max(5, len(risk) // 5)))
    axes[0].hist(risk[event == 1], bins=bins, alpha=0.6, color=_POSITIVE, label="event")
    axes[0].hist(risk[event == 0], bins=bins, alpha=0.6, color=_NEGATIVE, label="censored")
    axes[0].set(title="Predicted risk by outcome", xlabel="Predicted log-risk", ylabel="Patients")
    axes[0].legend(fontsize=8)
    if time is not None:
        high = risk > np.median(risk)
        for mask, name, color in ((high, "high risk", _POSITIVE), (~high, "low risk", _NEGATIVE)):
            steps_t, steps_s = _kaplan_meier(time[mask], event[mask])
            axes[1].step(steps_t, steps_s, where="post", color=color, label=f"{name} (n={mask.sum()})")
        axes[1].set(title="Kaplan-Meier split at median risk", xlabel="Time", ylabel="Survival")
        axes[1].set_ylim(0, 1.02)
        axes[1].legend(fontsize=8)
    return fig


def learning_curves(curves: dict[str, dict[str, np.ndarray]], metric: str | None) -> Figure:
    """Training loss and validation metric per epoch, averaged over folds, one line per model.

    Args:
        curves: ``{model: {"epoch": (E,), "train_loss": (E,), "val": (E,) or absent}}``.
        metric: the validation metric's name (``None`` when history has none).
    """
    fig, axes = _new(10 if metric else 5.5, 3.4, 2 if metric else 1)
    for i, (model, curve) in enumerate(curves.items()):
        axes[0].plot(curve["epoch"], curve["train_loss"], color=color_of(i), label=model)
        if metric and "val" in curve:
            axes[1].plot(curve["epoch"], curve["val"], color=color_of(i), label=model)
    axes[0].set(title="Training loss (mean over folds)", xlabel="Epoch", ylabel="Loss")
    axes[0].legend(fontsize=7)
    if metric:
        axes[1].set(title=f"Validation {metric} (mean over folds)", xlabel="Epoch", ylabel=metric)
    return fig


def contribution_bars(modalities: list[str], mean_abs: np.ndarray, mean_signed: np.ndarray) -> Figure:
    """Cohort-level mean |φ| and signed mean φ per modality (logit units).

    Args:
        modalities: modality names.
        mean_abs: mean absolute Shapley value per modality, shape ``(M,)``.
        mean_signed: mean signed Shapley value per modality, shape ``(M,)``.
    """
    fig, (ax_abs, ax_signed) = _new(10, 0.5 * len(modalities) + 1.8, 2)
    positions = np.arange(len(modalities))
    colors = [color_of(i) for i in range(len(modalities))]
    ax_abs.barh(positions, mean_abs, color=colors)
    ax_signed.barh(positions, mean_signed, color=colors)
    ax_signed.axvline(0, color="black", linewidth=0.8)
    for ax, title in ((ax_abs, "Mean |φ| (magnitude)"), (ax_signed, "Mean φ (direction)")):
        ax.set_yticks(positions, modalities)
        ax.invert_yaxis()
        ax.set(title=title, xlabel="logit units")
    return fig


def grouped_bars(groups: list[str], modalities: list[str], values: np.ndarray, title: str) -> Figure:
    """Bars per group (e.g. true class), one bar per modality.

    Args:
        groups: group names, shape ``(G,)``.
        modalities: modality names, shape ``(M,)``.
        values: shape ``(G, M)``.
        title: the figure title (say what the values are).
    """
    fig, (ax,) = _new(max(5.0, 1.2 * len(groups) * max(1, len(modalities)) / 2 + 2), 3.4)
    width = 0.8 / max(1, len(modalities))
    positions = np.arange(len(groups))
    for i, modality in enumerate(modalities):
        ax.bar(
            positions + (i - (len(modalities) - 1) / 2) * width,
            values[:, i],
            width,
            color=color_of(i),
            label=modality,
        )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(positions, groups)
    ax.set(title=title, ylabel="logit units")
    ax.legend(fontsize=7)
    return fig


def thin(values: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """At most ``limit`` of ``values``, drawn without replacement by a fixed seed (the same run draws the same)."""
    if len(values) <= limit:
        return values
    pick = np.sort(np.random.default_rng(seed).choice(len(values), size=limit, replace=False))
    return values[pick]


def distribution(names: list[str], samples: list[np.ndarray], title: str, xlabel: str) -> Figure:
    """Box plot with the individual patients overlaid as jittered points (a fixed sample of at most
    :data:`MAX_POINTS` per box, so a registry's 10^5 patients stay readable; the boxes use every value).

    Args:
        names: one name per box.
        samples: one array of values per box (may be empty).
        title: the figure title.
        xlabel: the value axis label.
    """
    fig, (ax,) = _new(8, 0.6 * len(names) + 1.6)
    rng = np.random.default_rng(0)  # fixed jitter so the same run always renders the same image
    kept = [(i, s) for i, s in enumerate(samples) if len(s)]
    if kept:
        ax.boxplot(
            [s for _, s in kept],
            positions=[i for i, _ in kept],
            orientation="horizontal",
            widths=0.5,
            showfliers=False,
        )
    for i, values in kept:
        shown = thin(values, MAX_POINTS)
        ax.scatter(shown, i + rng.uniform(-0.18, 0.18, len(shown)), s=8, alpha=0.5, color=color_of(i))
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set(title=title, xlabel=xlabel)
    return fig


def waterfall(f_empty: float, steps: list[tuple[str, float]], f_x: float) -> Figure:
    """From f(∅) to f(x): one bar per modality's φ, stacked left to right.

    Args:
        f_empty: the model output with every modality absent (logit).
        steps: ``(label, φ)`` per modality in order.
        f_x: the model output with the patient's actual modalities (logit).
    """
    fig, (ax,) = _new(5.2, 0.45 * (len(steps) + 2) + 1.0)
    labels = ["f(∅)", *[name for name, _ in steps], "f(x)"]
    ax.barh(0, f_empty, color="#95a5a6")
    level = f_empty
    for row, (_, phi) in enumerate(steps, start=1):
        ax.barh(row, phi, left=level, color=_POSITIVE if phi >= 0 else _NEGATIVE)
        # The label sits beyond the bar's far end, on the side the bar grows towards.
        ax.text(
            level + phi,
            row,
            f" {phi:+.3f} " if phi else " 0 ",
            va="center",
            fontsize=8,
            ha="left" if phi >= 0 else "right",
        )
        level += phi
    ax.barh(len(steps) + 1, f_x, color="#34495e")
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set(xlabel="logit")
    ax.margins(x=0.2)
    return fig
