"""What a reviewer sees of a run in the MLflow dashboard, built from the finished run folder.

The parent run gets every model's test metrics and cross-validation mean/sd under one naming scheme
(``<model>.test_<metric>``, ``<model>.cv_<metric>_mean``, ``<model>.cv_<metric>_sd``) so the compare view
lines runs up; the comparison as an MLflow table; the key figures as images under ``figures/``; and a short
markdown description (the run page's "Description").
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from clinfuse import outputs
from clinfuse.reports import plots, survival_figures
from clinfuse.reports.run_folder import RunFolder, held_out_predictions, label_indices, load_run_folder
from clinfuse.reports.section_contributions import cohort_contributions
from clinfuse.tracking import log_figure, log_metrics_step, log_table, set_run_note


def model_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Every model's summary metrics from ``metrics.json`` under the dashboard's names.

    Example: ``{"gated": {"test": {"auroc": 0.8}, "fold_mean": {"auroc": 0.7}}}`` gives
    ``{"gated.test_auroc": 0.8, "gated.cv_auroc_mean": 0.7}``.
    """
    named: dict[str, float] = {}
    for model, entry in metrics.items():
        if not isinstance(entry, dict):
            continue
        for name, value in (entry.get("test") or {}).items():
            named[f"{model}.test_{name}"] = value
        for name, (low, high) in (entry.get("test_ci") or {}).items():
            named[f"{model}.test_{name}_ci_low"], named[f"{model}.test_{name}_ci_high"] = low, high
        for stat in ("mean", "sd"):
            for name, value in (entry.get(f"fold_{stat}") or {}).items():
                named[f"{model}.cv_{name}_{stat}"] = value
    return {k: float(v) for k, v in named.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def run_description(run: RunFolder) -> str:
    """Markdown: headline result with CI, the best unimodal baseline, the paired p-value, the top modality."""
    primary = run.primary_model or "model"
    lines = [f"**clinfuse run** `{run.run_info.get('run_name', '')}` on cohort `{run.run_info.get('cohort_name', '')}`"]
    comparison = run.get(outputs.COMPARISON)
    if comparison is not None and "model" in comparison.columns:
        rows = comparison[comparison["model"].astype(str) == primary]
        if len(rows):
            row = rows.iloc[0]
            ci = f" (95% CI {row['ci_low']:.3f}–{row['ci_high']:.3f})" if _finite(row.get("ci_low")) else ""
            cv = f"; CV {row['fold_mean']:.3f} ± {row['fold_sd']:.3f}" if _finite(row.get("fold_mean")) else ""
            lines.append(f"- **{primary}**: test {row['metric']} **{row['value']:.3f}**{ci}{cv}")
            best = str(row.get("best_unimodal") or "")
            base = comparison[comparison["model"].astype(str) == best]
            if best and len(base):
                lines.append(f"- best unimodal baseline: **{best}**, test {row['metric']} {base.iloc[0]['value']:.3f}")
            if _finite(row.get("p_vs_best_unimodal")):
                lines.append(f"- paired bootstrap p vs {best}: {row['p_vs_best_unimodal']:.3f} (uncorrected)")
    contributions = run.get(outputs.CONTRIBUTIONS)
    if contributions is not None and run.modalities:
        summary = cohort_contributions(contributions, run.modalities)
        if len(summary):
            top = summary.sort_values("mean_abs_phi", ascending=False).iloc[0]
            lines.append(f"- top modality: **{top['modality']}** (mean |φ| {top['mean_abs_phi']:.3f} logit units)")
    lines.append("\nFigures under `figures/`, the full comparison in `comparison.json`, the report in `report.html`.")
    return "\n".join(lines)


def run_figures(run: RunFolder) -> dict[str, Figure]:
    """The key figures: ROC/PR/calibration (or risk/Kaplan–Meier), modality contributions, learning curves."""
    figures: dict[str, Figure] = {}
    predictions, _ = held_out_predictions(run)
    if predictions is not None and run.task == "survival" and {"risk", "event"} <= set(predictions.columns):
        risk = predictions["risk"].to_numpy(float)
        event = (label_indices(predictions["event"], run.classes) == 1).astype(int)
        figures["risk_by_outcome"] = plots.risk_by_outcome(risk, event)
        if "time" in predictions.columns:
            time = predictions["time"].to_numpy(float)
            keep = np.isfinite(risk) & np.isfinite(time)
            if keep.sum() >= 3:
                groups = survival_figures.risk_groups(risk[keep], time[keep], event[keep])
                figures["kaplan_meier"] = survival_figures.kaplan_meier_figure(
                    risk[keep], time[keep], event[keep], groups
                )
    elif predictions is not None and "label" in predictions.columns:
        y = label_indices(predictions["label"], run.classes)
        columns = [f"prob_{c}" for c in run.classes]
        prob = None
        if set(columns) <= set(predictions.columns):
            prob = predictions[columns].to_numpy(float)
        elif "prob" in predictions.columns:
            positive = predictions["prob"].to_numpy(float)
            prob = np.column_stack([1.0 - positive, positive])
        if prob is not None:
            keep = (y >= 0) & np.isfinite(prob).all(axis=1)
            if len(np.unique(y[keep])) >= 2:
                figures["roc_pr_calibration"] = plots.classification_curves(y[keep], prob[keep], run.classes)
    contributions = run.get(outputs.CONTRIBUTIONS)
    if contributions is not None and run.modalities:
        summary = cohort_contributions(contributions, run.modalities)
        figures["modality_contributions"] = plots.contribution_bars(
            run.modalities, summary["mean_abs_phi"].to_numpy(), summary["mean_phi"].to_numpy()
        )
    history = run.get(outputs.HISTORY)
    if history is not None and {"epoch", "train_loss", "model"} <= set(history.columns):
        metric = f"val_{run.run_info.get('primary_metric')}"
        columns = ["train_loss", metric] if metric in history.columns else ["train_loss"]
        curves = {}
        for model, rows in history.groupby(history["model"].astype(str), sort=False):
            mean = rows.groupby("epoch")[columns].mean()
            curves[model] = {"epoch": mean.index.to_numpy(), "train_loss": mean["train_loss"].to_numpy()}
            if len(columns) == 2:
                curves[model]["val"] = mean[metric].to_numpy()
        figures["learning_curves"] = plots.learning_curves(curves, metric[4:] if len(columns) == 2 else None)
    return figures


def log_dashboard(run_dir: Path) -> None:
    """Log the dashboard view of the finished run folder ``run_dir`` to the active (parent) run."""
    run = load_run_folder(run_dir)
    log_metrics_step(model_metrics(run.get(outputs.METRICS) or {}), step=0)
    comparison = run.get(outputs.COMPARISON)
    if comparison is not None:
        log_table(comparison, "comparison.json")
    for name, fig in run_figures(run).items():
        log_figure(fig, f"figures/{name}.png")
    set_run_note(run_description(run))
