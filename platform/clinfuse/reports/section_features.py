"""Cohort-level feature attributions: one SHAP beeswarm per modality whose kind has a cohort feature view.

Each modality's kind says whether its ``features_<modality>.csv`` holds named features a beeswarm
summarises (:attr:`ModalityKind.cohort_feature_view`: clinical variables and genes do; the per-channel
occlusion of a signal does not); the report never compares kind names.
"""

from __future__ import annotations

import warnings

import shap
from matplotlib.figure import Figure

from clinfuse.errors import RunError
from clinfuse.explain.explanation import explanation_from_frame
from clinfuse.kinds import get_kind, list_kinds
from clinfuse.reports.markup import figure, heading, note, para
from clinfuse.reports.run_folder import RunFolder

MAX_DISPLAY = 12


def beeswarm_figure(explanation: shap.Explanation, title: str, max_display: int = MAX_DISPLAY) -> Figure:
    """shap's own beeswarm drawn on a figure of ours (object API, no pyplot state left behind).

    Args:
        explanation: ``(patients, features)`` attributions.
        title: the figure title.
        max_display: features shown (the rest are summed into one row by shap).
    """
    rows = min(max_display, explanation.shape[1])
    fig = Figure(figsize=(8, 0.4 * rows + 1.6), layout="constrained")
    ax = fig.add_subplot()
    with warnings.catch_warnings():
        # A feature with no recorded value among the explained patients is drawn grey by shap, after numpy
        # warns about the all-NaN colour range; the figure says what it needs to.
        warnings.filterwarnings("ignore", "All-NaN slice encountered", RuntimeWarning)
        shap.plots.beeswarm(explanation, max_display=max_display, ax=ax, show=False, plot_size=None)
    ax.set_title(title, fontsize=11)
    return fig


def _has_view(run: RunFolder, modality: str) -> bool:
    kind = run.modality_kinds.get(modality)
    return kind in list_kinds() and get_kind(kind).cohort_feature_view


def feature_views(run: RunFolder) -> list[str]:
    """A beeswarm per modality with a cohort feature view (nothing when the run has none)."""
    parts: list[str] = []
    for modality, frame in run.features.items():
        if not _has_view(run, modality):
            continue
        try:
            explanation = explanation_from_frame(frame)
        except RunError as exc:
            parts.append(note(f"features_{modality}.csv: {exc}; no beeswarm is drawn."))
            continue
        if explanation.shape[0] < 2 or explanation.shape[1] < 1:
            continue
        fig = beeswarm_figure(explanation, f"{modality}: attributions across {explanation.shape[0]} patients")
        parts.append(
            figure(
                fig,
                f"SHAP beeswarm of {modality} feature attributions",
                f"One dot per patient and {modality} feature: position = attribution (logit units), colour = "
                "the feature's value (grey: categorical or missing); features ranked by mean |attribution|.",
            )
        )
    if not parts:
        return []
    intro = para(
        "Within-modality attributions of the explained test patients (features_<modality>.csv); open the same "
        "values in a notebook with clinfuse.explain.read_feature_explanation, which returns a shap.Explanation."
    )
    return [heading("Feature attributions across patients"), intro, *parts]
