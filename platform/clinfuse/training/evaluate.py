"""Test metrics with bootstrap CIs, fold summaries and the comparison of every model against the best unimodal
and the best classical one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from clinfuse.cohort import Cohort, Splits
from clinfuse.config import EvaluationConfig
from clinfuse.metric_catalog import primary_metric
from clinfuse.training.loop import evaluate_scores, scores_from_logits
from clinfuse.training.metrics import bootstrap_all, paired_bootstrap_test, summarise_folds
from clinfuse.training.run import TrainedModel


def test_scores(trained: TrainedModel, task: str) -> np.ndarray:
    """Test-set probabilities (classification) or risks (survival) of a model's fold ensemble."""
    assert trained.test is not None
    return scores_from_logits(trained.test.logits, task)


def model_metrics(trained: TrainedModel, cohort: Cohort, splits: Splits, cfg: EvaluationConfig, seed: int) -> dict:
    """Fold metrics (mean and sd) and test metrics with bootstrap CIs of one model."""
    test_idx = splits.test
    scores = test_scores(trained, cohort.task)
    time = None if cohort.time is None else cohort.time[test_idx]
    test = evaluate_scores(cohort.task, cohort.y[test_idx], scores, trained.threshold, time)
    ci = bootstrap_all(
        cohort.y[test_idx],
        scores,
        trained.threshold,
        cohort.task,
        cfg.bootstrap,
        cfg.ci_level,
        seed,
        time=time,
    )
    mean, sd = summarise_folds(trained.fold_metrics)
    return {
        "kind": trained.plan.kind,
        "modalities": list(trained.plan.modalities),
        "threshold": trained.threshold,
        "folds": trained.fold_metrics,
        "fold_mean": mean,
        "fold_sd": sd,
        "test": test,
        "test_ci": {k: list(v) for k, v in ci.items()},
    }


def _best_of_kind(models: list[TrainedModel], metrics: dict[str, dict], kind: str, metric: str) -> TrainedModel | None:
    """The model of ``kind`` with the best mean validation metric (never chosen by test)."""
    candidates = [m for m in models if m.plan.kind == kind]
    if not candidates:
        return None
    return max(candidates, key=lambda m: np.nan_to_num(metrics[m.plan.name]["fold_mean"].get(metric, np.nan), nan=-1))


def compare_models(
    models: list[TrainedModel],
    metrics: dict[str, dict],
    cohort: Cohort,
    splits: Splits,
    cfg: EvaluationConfig,
    seed: int,
) -> pd.DataFrame:
    """One row per model: the primary metric on test with its CI and paired bootstrap tests of the difference
    against the best unimodal model and against the best classical baseline (each chosen by mean validation
    metric, never by test)."""
    metric = primary_metric(cohort.task)
    references = {kind: _best_of_kind(models, metrics, kind, metric) for kind in ("unimodal", "classical")}
    test_idx = splits.test
    time = None if cohort.time is None else cohort.time[test_idx]
    rows: list[dict[str, Any]] = []
    for trained in models:
        m = metrics[trained.plan.name]
        row = {
            "model": trained.plan.name,
            "kind": trained.plan.kind,
            "metric": metric,
            "value": m["test"].get(metric),
            "ci_low": m["test_ci"].get(metric, [np.nan, np.nan])[0],
            "ci_high": m["test_ci"].get(metric, [np.nan, np.nan])[1],
            "fold_mean": m["fold_mean"].get(metric),
            "fold_sd": m["fold_sd"].get(metric),
        }
        for kind, best in references.items():
            row[f"best_{kind}"] = best.plan.name if best else ""
            row[f"diff_vs_best_{kind}"] = np.nan
            row[f"p_vs_best_{kind}"] = np.nan
            if best is not None and trained is not best:
                test = paired_bootstrap_test(
                    cohort.y[test_idx],
                    test_scores(trained, cohort.task),
                    test_scores(best, cohort.task),
                    metric=metric,
                    n_boot=max(cfg.bootstrap, 1),
                    seed=seed,
                    task=cohort.task,
                    time=time,
                )
                row[f"diff_vs_best_{kind}"] = test["diff"]
                row[f"p_vs_best_{kind}"] = test["p_value"]
        rows.append(row)
    return pd.DataFrame(rows)


def predictions_frame(trained: TrainedModel, cohort: Cohort, splits: Splits, pseudo_ids: list[str]) -> pd.DataFrame:
    """Per-patient test predictions of one model with pseudonymous ids (never raw ids); ``model`` names it."""
    assert trained.test is not None
    idx = trained.test.index
    scores = test_scores(trained, cohort.task)
    frame = pd.DataFrame({"model": trained.plan.name, "patient": [pseudo_ids[i] for i in idx], "fold": "test"})
    if cohort.task == "survival":
        frame["time"] = cohort.time[idx]
        frame["event"] = cohort.y[idx]
        frame["risk"] = scores
        frame["prediction"] = (scores > np.median(scores)).astype(int)
        return frame
    frame["label"] = [cohort.classes[k] for k in cohort.y[idx]]
    if cohort.task == "binary":
        frame["prob"] = scores
        frame["prediction"] = [cohort.classes[int(p >= trained.threshold)] for p in scores]
    else:
        for k, name in enumerate(cohort.classes):
            frame[f"prob_{name}"] = scores[:, k]
        frame["prediction"] = [cohort.classes[k] for k in scores.argmax(axis=1)]
    return frame


def all_predictions_frame(
    models: list[TrainedModel], cohort: Cohort, splits: Splits, pseudo_ids: list[str]
) -> pd.DataFrame:
    """Test predictions of every model of the run, primary first (``model`` column): the same patients for
    each, so outside models can be compared with them patient by patient."""
    return pd.concat([predictions_frame(m, cohort, splits, pseudo_ids) for m in models], ignore_index=True)


def history_frame(models: list[TrainedModel]) -> pd.DataFrame:
    """Per-epoch learning curves of every model and fold."""
    rows = [{"model": t.plan.name, "fold": f.fold, **h} for t in models for f in t.folds for h in f.result.history]
    return pd.DataFrame(rows)
