"""What a reviewer sees of a run in the MLflow dashboard, built from the finished run folder.

The parent run carries few metrics, each a chart on the run's "Model metrics" tab: the headline (the primary
model's ``test_<metric>`` for every metric, and for the primary metric its CI, ``cv_<metric>_mean``/``_sd`` and
the paired p-value against the best unimodal model), and every model's primary metric under one naming scheme
(``<model>.test_<metric>``, ``_ci_low``/``_ci_high``, ``<model>.cv_<metric>_mean``/``_sd``) so the compare
view lines runs up. Every other number (each model's every metric with CI and CV mean/sd) is in the MLflow
table ``metrics_table.json``, and each model's child run keeps its own test metrics. Also logged: the
comparison as an MLflow table, the key figures under ``figures/``, a short markdown description (the run
page's "Description"), and the experiment's saved run-table view with the headline columns.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from clinfuse import outputs
from clinfuse.reports import plots, survival_figures
from clinfuse.reports.run_folder import RunFolder, held_out_predictions, label_indices, load_run_folder
from clinfuse.reports.section_contributions import cohort_contributions
from clinfuse.tracking import log_figure, log_metrics_step, log_table, save_run_table_view, set_run_note


def _entries(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {model: entry for model, entry in metrics.items() if isinstance(entry, dict)}


def _numbers(named: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in named.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _summary(entry: dict[str, Any], metric: str, prefix: str) -> dict[str, Any]:
    """``<prefix>test_<metric>`` with its CI and ``<prefix>cv_<metric>_mean``/``_sd`` from one model's entry."""
    named = {f"{prefix}test_{metric}": (entry.get("test") or {}).get(metric)}
    ci = (entry.get("test_ci") or {}).get(metric)
    if isinstance(ci, list | tuple) and len(ci) == 2:
        named[f"{prefix}test_{metric}_ci_low"], named[f"{prefix}test_{metric}_ci_high"] = ci
    for stat in ("mean", "sd"):
        named[f"{prefix}cv_{metric}_{stat}"] = (entry.get(f"fold_{stat}") or {}).get(metric)
    return named


def model_metrics(metrics: dict[str, Any], metric: str) -> dict[str, float]:
    """Every model's ``metric`` from ``metrics.json`` under the dashboard's names.

    Example: ``{"gated": {"test": {"auroc": 0.8}, "fold_mean": {"auroc": 0.7}}}`` with ``"auroc"`` gives
    ``{"gated.test_auroc": 0.8, "gated.cv_auroc_mean": 0.7}``.
    """
    named: dict[str, Any] = {}
    for model, entry in _entries(metrics).items():
        named.update(_summary(entry, metric, f"{model}."))
    return _numbers(named)


def headline_metrics(entry: dict[str, Any], metric: str, p_value: Any = None) -> dict[str, float]:
    """The primary model's numbers without a model prefix, so runs line up whichever model is primary.

    Every test metric (``test_<m>``), and for ``metric`` its CI, ``cv_<metric>_mean``/``_sd`` and, when
    given, ``p_vs_best_unimodal``.
    """
    named: dict[str, Any] = {f"test_{m}": v for m, v in (entry.get("test") or {}).items()}
    named.update(_summary(entry, metric, ""))
    named["p_vs_best_unimodal"] = p_value
    return _numbers(named)


def metrics_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """Every model's every test metric with CI and CV mean/sd, one row per model and metric."""
    rows = []
    for model, entry in _entries(metrics).items():
        test, ci = entry.get("test") or {}, entry.get("test_ci") or {}
        mean, sd = entry.get("fold_mean") or {}, entry.get("fold_sd") or {}
        for name in dict.fromkeys([*test, *mean]):
            if not _numbers({name: test.get(name, mean.get(name))}):
                continue  # a note, not a number
            low, high = ci.get(name) or (None, None)
            cv = {"cv_mean": mean.get(name), "cv_sd": sd.get(name)}
            rows.append({"model": model, "metric": name, "test": test.get(name), "ci_low": low, "ci_high": high, **cv})
    return pd.DataFrame(rows, columns=["model", "metric", "test", "ci_low", "ci_high", "cv_mean", "cv_sd"])


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


def _primary_p_value(run: RunFolder) -> Any:
    comparison = run.get(outputs.COMPARISON)
    if comparison is None or not {"model", "p_vs_best_unimodal"} <= set(comparison.columns):
        return None
    rows = comparison[comparison["model"].astype(str) == str(run.primary_model)]
    return rows["p_vs_best_unimodal"].iloc[0] if len(rows) else None


def log_dashboard(run_dir: Path) -> None:
    """Log the dashboard view of the finished run folder ``run_dir`` to the active (parent) run."""
    run = load_run_folder(run_dir)
    metrics = run.get(outputs.METRICS) or {}
    metric = str(run.run_info.get("primary_metric") or "")
    headline = headline_metrics(metrics.get(run.primary_model) or {}, metric, _primary_p_value(run))
    per_model = model_metrics(metrics, metric)
    log_metrics_step({**headline, **per_model}, step=0)
    log_table(metrics_table(metrics), "metrics_table.json")
    comparison = run.get(outputs.COMPARISON)
    if comparison is not None:
        log_table(comparison, "comparison.json")
    for name, fig in run_figures(run).items():
        log_figure(fig, f"figures/{name}.png")
    set_run_note(run_description(run))
    # The run table's columns: the headline of the primary metric, then each model's test value of it.
    leading = [f"test_{metric}{end}" for end in ("", "_ci_low", "_ci_high")]
    leading += [f"cv_{metric}_mean", f"cv_{metric}_sd", "p_vs_best_unimodal"]
    columns = [k for k in leading if k in headline] + [k for k in per_model if k.endswith(f".test_{metric}")]
    save_run_table_view(columns, params=["fusion.method"])
