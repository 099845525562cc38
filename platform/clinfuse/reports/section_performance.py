"""The ``performance`` section: test metrics with CIs, curves, folds, model comparison, learning curves."""

from __future__ import annotations

from typing import Any

import numpy as np

from clinfuse.metric_catalog import headline_order
from clinfuse.reports import calibration, plots, survival_figures
from clinfuse.reports.markup import Raw, details, figure, heading, missing, note, para, section, table
from clinfuse.reports.run_folder import RunFolder, held_out_predictions, label_indices
from clinfuse.training.metrics import ECE_BINS, classification_metrics


def headline_metric(metrics: list[str]) -> str | None:
    """The metric a comparison is summarised by: AUROC (binary/multiclass) or C-index (survival)."""
    for name in headline_order():
        if name in metrics:
            return name
    return metrics[0] if metrics else None


def _metrics_table(entry: dict[str, Any]) -> Raw:
    test, test_ci = entry.get("test") or {}, entry.get("test_ci") or {}
    mean, sd = entry.get("fold_mean") or {}, entry.get("fold_sd") or {}
    names = list(dict.fromkeys([*test, *mean]))
    rows = []
    for name in names:
        low, high = (list(test_ci.get(name) or []) + [None, None])[:2]
        rows.append((name, test.get(name), low, high, mean.get(name), sd.get(name)))
    return table(["metric", "test", "CI low", "CI high", "fold mean", "fold sd"], rows, css="metrics")


def _folds_table(entry: dict[str, Any]) -> Raw | None:
    folds = [f for f in entry.get("folds") or [] if isinstance(f, dict)]
    if not folds:
        return None
    names = list(dict.fromkeys(k for fold in folds for k in fold))
    rows = [(f"fold {i}", *(fold.get(n) for n in names)) for i, fold in enumerate(folds)]
    return table(["fold", *names], rows)


def _base_kept(entry: dict[str, Any]) -> list[str]:
    """How many folds kept their linear base alone (best epoch 0): the networks added nothing on validation."""
    epochs = [f.get("best_epoch") for f in entry.get("folds") or [] if isinstance(f, dict)]
    epochs = [e for e in epochs if isinstance(e, (int, float))]
    if not epochs:
        return []
    kept = sum(1 for e in epochs if e == 0)
    return [
        note(
            f"The model started from its linear base (the fold's penalised regression): {kept} of {len(epochs)} "
            "folds kept the base alone (best epoch 0), because no training epoch of the networks improved the "
            "validation metric on it."
        )
    ]


def _survival_curves(predictions: Any, chosen: str, run: RunFolder) -> list[str]:
    outcome = "event" if "event" in predictions.columns else "label"
    if "risk" not in predictions.columns or outcome not in predictions.columns:
        return [note("predictions.csv has no 'risk' or 'event' column, so survival plots are not drawn.")]
    risk = predictions["risk"].to_numpy(float)
    event = (label_indices(predictions[outcome], run.classes) == 1).astype(int)
    parts = [figure(plots.risk_by_outcome(risk, event), "Risk distribution by outcome", f"Computed from {chosen}.")]
    if "time" not in predictions.columns:
        return [*parts, note("predictions.csv holds no 'time' column, so no Kaplan-Meier curves are drawn.")]
    time = predictions["time"].to_numpy(float)
    keep = np.isfinite(risk) & np.isfinite(time)
    risk, time, event = risk[keep], time[keep], event[keep]
    if len(risk) < 3:
        return [*parts, note(f"Fewer than three {chosen} have a risk and a time: no Kaplan-Meier curves are drawn.")]
    groups = survival_figures.risk_groups(risk, time, event)
    parts += [
        heading("Kaplan-Meier by predicted risk group"),
        figure(
            survival_figures.kaplan_meier_figure(risk, time, event, groups),
            "Kaplan-Meier curves by predicted risk tertile with numbers at risk",
            "Risk groups are tertiles of the predicted log-risk; shaded: pointwise 95% bands (log-log); the table "
            "counts patients still at risk at each time. Log-rank test across the groups.",
        ),
        table(
            ["risk groups", "log-rank χ²", "degrees of freedom", "p-value"],
            [(", ".join(groups.names), groups.chisq, len(groups.names) - 1, groups.p_value)],
            css="logrank",
        ),
    ]
    auc = survival_figures.td_auc_figure(risk, time, event)
    if auc is not None:
        parts.append(
            figure(
                auc,
                "Time-dependent AUC over follow-up time",
                "Cumulative/dynamic AUC(t): patients with an event by t against those event-free beyond t.",
            )
        )
    return parts


def _calibration(y: np.ndarray, prob: np.ndarray, classes: list[str], level: float) -> list[str]:
    """Reliability diagram, calibration intercept and slope, and (binary) the decision curve."""
    binary = prob.shape[1] == 2
    if binary:
        outcome, p = (y == 1).astype(float), prob[:, 1]
        label = f"P({classes[1]})"
        ece = classification_metrics(y, p, task="binary")["ece"]
    else:
        predicted = prob.argmax(axis=1)
        outcome, p = (predicted == y).astype(float), prob.max(axis=1)
        label = "top-label confidence"
        ece = classification_metrics(y, prob, task="multiclass")["ece"]
    fit = calibration.recalibration(outcome, p, level)
    rows = [
        ("calibration intercept (ideal 0)", fit.intercept, *fit.intercept_ci),
        ("calibration slope (ideal 1)", fit.slope, *fit.slope_ci),
        (f"ECE ({ECE_BINS} equal-width bins)", ece, None, None),
    ]
    caption = (
        f"{ECE_BINS} equal-width bins of the predicted probability, the same bins as the ECE in the metrics table"
        + ("; decision curve: net benefit of treating when the prediction is above the threshold." if binary else ".")
    )
    return [
        heading("Calibration" + (" and decision curve" if binary else " (top-label)")),
        figure(calibration.calibration_figure(outcome, p, ece, label, decision=binary), "Calibration", caption),
        table(["", "estimate", "CI low", "CI high"], rows, caption=f"{100 * level:.0f}% Wald CIs", css="calibration"),
    ]


def _curves(run: RunFolder) -> list[str]:
    predictions, chosen = held_out_predictions(run)
    if predictions is None:
        return [missing("predictions.csv", "no ROC, precision-recall or calibration curves are drawn")]
    if run.task == "survival":
        return _survival_curves(predictions, chosen, run)
    classes = run.classes
    y = label_indices(predictions["label"], classes)
    if run.task == "multiclass" or len(classes) > 2:
        columns = [f"prob_{c}" for c in classes]
        if not set(columns) <= set(predictions.columns):
            return [note(f"predictions.csv lacks the columns {', '.join(columns)}, so no curves are drawn.")]
        prob = predictions[columns].to_numpy(float)
    elif "prob" in predictions.columns:
        positive = predictions["prob"].to_numpy(float)
        prob = np.column_stack([1.0 - positive, positive])
    else:
        return [note("predictions.csv has no 'prob' column, so no curves are drawn.")]
    keep = (y >= 0) & np.isfinite(prob).all(axis=1)
    if len(np.unique(y[keep])) < 2:
        return [note(f"The {chosen} hold a single class, so ROC and PR curves are undefined.")]
    fig = plots.classification_curves(y[keep], prob[keep], classes)
    level = float(run.run_info.get("ci_level") or 0.95)
    return [
        figure(fig, "ROC and precision-recall curves", f"Computed from {chosen} ({keep.sum()})."),
        *_calibration(y[keep], prob[keep], classes, level),
    ]


_OPTIONAL_COLUMNS = {
    "fold_mean": "fold mean",
    "fold_sd": "fold sd",
    "diff_vs_best_unimodal": "diff vs best unimodal",
    "diff_vs_primary": "diff vs primary",
    "p_vs_primary": "p vs primary",
    "diff_vs_best_classical": "diff vs best classical",
    "p_vs_best_classical": "p vs best classical",
}

_ABLATION = (
    "Rows of kind ablation are the primary model retrained without a modality that was flagged as influential "
    "but not useful (see the contributions section); diff vs primary is the ablation's {metric} minus the "
    "primary's on the same test patients, with a paired bootstrap p-value (p vs primary)."
)


def _all_models(metrics: dict[str, Any] | None) -> list[str]:
    """Every model's test metrics from metrics.json, one row per model."""
    entries = {m: e for m, e in (metrics or {}).items() if isinstance(e, dict) and e.get("test")}
    if not entries:
        return []
    names = list(dict.fromkeys(k for e in entries.values() for k in e["test"]))
    rows = [(m, str(e.get("kind", "")), *(e["test"].get(n) for n in names)) for m, e in entries.items()]
    return [details("Test metrics of every model (metrics.json)", [table(["model", "kind", *names], rows)])]


def _against_classical(head: Any, primary: str | None) -> list[str]:
    """One sentence: the primary model against the best classical baseline, paired on the test patients."""
    if "best_classical" not in head.columns or not head["best_classical"].fillna("").astype(str).str.len().any():
        return []
    best = str(head["best_classical"].dropna().astype(str).iloc[0])
    row = head[head["model"].astype(str) == str(primary)]
    if row.empty or best == str(primary):
        return []
    diff, p = row["diff_vs_best_classical"].iloc[0], row["p_vs_best_classical"].iloc[0]
    verdict = "ahead of" if diff > 0 else "behind" if diff < 0 else "level with"
    return [
        para(
            f"Against the classical baselines (penalised regression and gradient boosting on the same folds, "
            f"preprocessing and test patients), the primary model {primary} is {abs(diff):.3f} {verdict} the best "
            f"one, {best} (chosen on validation folds); paired bootstrap p = {p:.3f}."
        )
    ]


def _comparison(run: RunFolder) -> list[str]:
    frame = run.get("comparison.csv")
    if frame is None:
        return [missing("comparison.csv", "the model is not compared with unimodal and fusion baselines")]
    needed = {"model", "metric", "value"}
    if not needed <= set(frame.columns):
        return [note(f"comparison.csv lacks the columns {', '.join(sorted(needed - set(frame.columns)))}.")]
    for column in ("kind", "ci_low", "ci_high", "p_vs_best_unimodal"):
        if column not in frame.columns:
            frame = frame.assign(**{column: np.nan})
    metric = headline_metric(list(dict.fromkeys(frame["metric"].astype(str))))
    head = frame[frame["metric"].astype(str) == metric].sort_values("value", ascending=False)
    extras = [c for c in _OPTIONAL_COLUMNS if c in head.columns]
    primary = run.primary_model
    rows = [
        (
            f"{r['model']} (primary)" if str(r["model"]) == primary else str(r["model"]),
            str(r["kind"]),
            r["value"],
            r["ci_low"],
            r["ci_high"],
            *(r[c] for c in extras),
            r["p_vs_best_unimodal"],
        )
        for _, r in head.iterrows()
    ]
    headers = ["model", "kind", metric or "value", "CI low", "CI high"]
    headers += [*(_OPTIONAL_COLUMNS[c] for c in extras), "p vs best unimodal"]
    best = ""
    if "best_unimodal" in head.columns and head["best_unimodal"].notna().any():
        best = f" (here {head['best_unimodal'].dropna().astype(str).iloc[0]}, chosen on validation folds)"
    parts = [
        heading(f"Comparison with baselines ({metric}, test set)"),
        table(headers, rows, css="comparison"),
        para(
            "p vs best unimodal: paired bootstrap test of each model against the best single-modality "
            f"model{best} on the same test patients; it is not corrected for the number of models compared."
        ),
        *_against_classical(head, primary),
    ]
    if (head["kind"].astype(str) == "ablation").any():
        parts.append(para(_ABLATION.format(metric=metric)))
    if frame["metric"].nunique() > 1:
        every = [
            (
                str(r["model"]),
                str(r["kind"]),
                str(r["metric"]),
                r["value"],
                r["ci_low"],
                r["ci_high"],
                r["p_vs_best_unimodal"],
            )
            for _, r in frame.iterrows()
        ]
        headers = ["model", "kind", "metric", "value", "CI low", "CI high", "p vs best unimodal"]
        parts.append(details("Every row of comparison.csv", [table(headers, every)]))
    return parts + _all_models(run.get("metrics.json"))


def _learning(run: RunFolder) -> list[str]:
    history = run.get("history.csv")
    if history is None:
        return [missing("history.csv", "no learning curves are drawn")]
    if not {"epoch", "train_loss"} <= set(history.columns):
        return [note("history.csv lacks 'epoch' or 'train_loss', so no learning curves are drawn.")]
    val_columns = [c for c in history.columns if c.startswith("val_")]
    preferred = run.run_info.get("primary_metric") or headline_metric([c[len("val_") :] for c in val_columns])
    metric = f"val_{preferred}" if f"val_{preferred}" in val_columns else (val_columns or [None])[0]
    if "model" not in history.columns:
        history = history.assign(model=run.primary_model or "model")
    curves: dict[str, dict[str, np.ndarray]] = {}
    for model, rows in history.groupby(history["model"].astype(str), sort=False):
        mean = rows.groupby("epoch")[[c for c in ("train_loss", metric) if c]].mean()
        curve = {"epoch": mean.index.to_numpy(), "train_loss": mean["train_loss"].to_numpy()}
        if metric:
            curve["val"] = mean[metric].to_numpy()
        curves[model] = curve
    label = metric[len("val_") :] if metric else None
    fig = plots.learning_curves(curves, label)
    return [heading("Learning curves"), figure(fig, "Learning curves", "Means over cross-validation folds.")]


def performance_section(run: RunFolder) -> Raw:
    """Test metrics with CIs, curves, per-fold results, comparison with baselines and learning curves."""
    parts: list[str] = []
    metrics = run.get("metrics.json")
    primary = run.primary_model
    entry = (metrics or {}).get(primary) if primary else None
    if metrics is None:
        parts.append(missing("metrics.json", "test metrics and confidence intervals are not shown"))
    elif not isinstance(entry, dict):
        parts.append(note(f"metrics.json holds no entry for the primary model {primary!r}."))
    else:
        level = run.run_info.get("ci_level")
        ci_text = f"{100 * float(level):.0f}%" if level else "bootstrap"
        parts += [
            heading(f"Primary model: {primary}"),
            para(
                f"Test metrics with {ci_text} confidence intervals (bootstrap over test patients), and the "
                "mean ± sd of the validation metric over cross-validation folds."
            ),
            _metrics_table(entry),
        ]
        folds = _folds_table(entry)
        if folds is not None:
            parts.append(details("Per-fold validation metrics", [folds]))
        if run.linear_base:
            parts.extend(_base_kept(entry))
    parts.append(heading("Curves"))
    parts.extend(_curves(run))
    parts.extend(_comparison(run))
    parts.extend(_learning(run))
    return section("performance", "Performance", parts)
