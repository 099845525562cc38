"""Figures of the report, drawn with matplotlib's object API (no pyplot state, Agg canvas), embedded as PNG.

Every function takes plain arrays and returns a :class:`~matplotlib.figure.Figure`; :func:`to_png` renders it.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox
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


def _agg(fig: Figure) -> FigureCanvasAgg:
    """The figure's Agg canvas (attached on first use), for measuring rendered text."""
    return fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)


def _new(width: float, height: float, ncols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def classification_curves(y: np.ndarray, prob: np.ndarray, classes: list[str]) -> Figure:
    """ROC and precision-recall curves (one-vs-rest per class when there are more than two).

    Calibration has its own figure (:mod:`clinfuse.reports.calibration`), binned as the ECE is.

    Args:
        y: true class indices, shape ``(n,)``.
        prob: predicted probabilities, shape ``(n, K)`` in class order.
        classes: class names in index order.
    """
    fig, (ax_roc, ax_pr) = _new(10, 4.0, 2)
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
    ax_roc.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
    ax_roc.set(title="ROC", xlabel="False positive rate", ylabel="True positive rate")
    ax_pr.set(title="Precision-recall (dotted: prevalence)", xlabel="Recall", ylabel="Precision")
    for ax in (ax_roc, ax_pr):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, loc="best")
    return fig


def risk_by_outcome(risk: np.ndarray, event: np.ndarray) -> Figure:
    """Predicted risk by event status (Kaplan-Meier curves are in :mod:`clinfuse.reports.survival_figures`).

    Args:
        risk: predicted log-risk, shape ``(n,)``.
        event: event indicator (1 event, 0 censored), shape ``(n,)``.
    """
    fig, axes = _new(5.5, 3.6, 1)
    bins = np.histogram_bin_edges(risk, bins=min(20, max(5, len(risk) // 5)))
    axes[0].hist(risk[event == 1], bins=bins, alpha=0.6, color=_POSITIVE, label="event")
    axes[0].hist(risk[event == 0], bins=bins, alpha=0.6, color=_NEGATIVE, label="censored")
    axes[0].set(title="Predicted risk by outcome", xlabel="Predicted log-risk", ylabel="Patients")
    axes[0].legend(fontsize=8)
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

    Value labels sit beyond each bar's far end; the x-range then grows until every label lies inside the
    axes (:func:`fit_labels`), so a label never runs into the row names or another label.

    Args:
        f_empty: the model output with every modality absent (logit).
        steps: ``(label, φ)`` per modality in order.
        f_x: the model output with the patient's actual modalities (logit).
    """
    fig, (ax,) = _new(5.2, 0.45 * (len(steps) + 2) + 1.0)
    labels = ["f(∅)", *[name for name, _ in steps], "f(x)"]
    ax.barh(0, f_empty, color="#95a5a6")
    level = f_empty
    texts = []
    for row, (_, phi) in enumerate(steps, start=1):
        ax.barh(row, phi, left=level, color=_POSITIVE if phi >= 0 else _NEGATIVE)
        # The label sits beyond the bar's far end, on the side the bar grows towards.
        texts.append(
            ax.text(
                level + phi,
                row,
                f" {phi:+.3f} " if phi else " 0 ",
                va="center",
                fontsize=8,
                ha="left" if phi >= 0 else "right",
            )
        )
        level += phi
    ax.barh(len(steps) + 1, f_x, color="#34495e")
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set(xlabel="logit")
    ax.margins(x=0.05)
    fit_labels(fig, ax, texts)
    return fig


def fit_labels(fig: Figure, ax: Any, texts: list[Text], rounds: int = 4) -> None:
    """Widen ``ax``'s x-range until every text in ``texts`` lies inside the axes.

    Text is drawn in points, not data units, so the room it needs is only known after a draw; widening
    the range changes tick labels and the axes' width, hence a few rounds.
    """
    canvas = _agg(fig)
    for _ in range(rounds):
        fig.draw_without_rendering()  # lays out (constrained layout, ticks) without rasterising
        renderer = canvas.get_renderer()
        inside = ax.get_window_extent(renderer)
        boxes = [t.get_window_extent(renderer) for t in texts]
        if all(b.x0 >= inside.x0 and b.x1 <= inside.x1 for b in boxes):
            return
        to_data = ax.transData.inverted()
        low, high = ax.get_xlim()
        for box in boxes:
            (left, _), (right, _) = to_data.transform([[box.x0, box.y0], [box.x1, box.y1]])
            low, high = min(low, left), max(high, right)
        pad = 0.03 * (high - low)
        ax.set_xlim(low - pad, high + pad)


def text_boxes(fig: Figure) -> list[tuple[str, Bbox]]:
    """Every visible, non-empty text of a figure with its rendered box in display pixels.

    Tick labels outside the axis range are not drawn and not returned.
    """
    canvas = _agg(fig)
    fig.draw_without_rendering()
    renderer = canvas.get_renderer()
    found: list[tuple[str, Bbox]] = []
    for ax in fig.axes:
        ticks = []
        for axis, (low, high) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            low, high = min(low, high), max(low, high)
            for tick in axis.get_major_ticks():
                if low - 1e-9 <= tick.get_loc() <= high + 1e-9:
                    ticks += [tick.label1, tick.label2]
        candidates = [*ax.texts, *ticks, ax.xaxis.label, ax.yaxis.label, ax.title]
        for text in candidates:
            if text.get_visible() and text.get_text().strip():
                found.append((text.get_text(), text.get_window_extent(renderer)))
    for text in fig.texts:
        if text.get_visible() and text.get_text().strip():
            found.append((text.get_text(), text.get_window_extent(renderer)))
    return found


def overlapping_texts(fig: Figure, tolerance: float = 0.5) -> list[tuple[str, str]]:
    """Pairs of texts of ``fig`` whose rendered boxes overlap by more than ``tolerance`` pixels."""
    boxes = text_boxes(fig)
    pairs = []
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1 :]:
            width = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
            height = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
            if width > tolerance and height > tolerance:
                pairs.append((a, b))
    return pairs
