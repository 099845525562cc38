"""Classical baselines on the same folds as the deep models: penalised regression and gradient boosting.

A reviewer's first question about a deep fusion model is how it compares with the model a researcher would
try first. Each classical model here sees exactly what the deep models see: the run's splits, each fold's
preprocessing fitted on that fold's training patients (:func:`~clinfuse.training.data.fit_fold_inputs`), and
the features each modality's kind gives a classical model (:meth:`ModalityKind.classical_features`: table
columns, or intensity statistics and a pooled grid of an image or a recording). Hyper-parameters (the
penalty) are chosen by an inner cross-validation over the fold's training patients only; validation and
test patients never reach ``fit``.

An absent modality takes its features' training means, which is also how the modality Shapley game treats a
modality outside a coalition (see :func:`design_matrix`), so deep and classical attributions answer the same
question. Test predictions are the mean logit (log-odds, or log-hazard for survival) of the fold models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clinfuse.cohort import Cohort, Splits
from clinfuse.config import ExperimentConfig
from clinfuse.training.data import FoldInputs, fit_fold_inputs
from clinfuse.training.estimators import (
    estimator_target,
    fit_estimator,
    logits,
    make_estimator,
)
from clinfuse.training.loop import FoldResult, Predictions, evaluate_scores, scores_from_logits
from clinfuse.training.metrics import choose_threshold
from clinfuse.training.models import ModelPlan
from clinfuse.training.run import TrainedModel

CLASSICAL = "classical"


@dataclass
class FoldFeatures:
    """One fold's classical features of every cohort patient, absent modalities at their training means.

    Args:
        modalities: model order.
        blocks: ``(n_patients, F_m)`` float32 per modality (kept per fold for explanations; the design matrix
            built from them is float64).
        means: ``(F_m,)`` training means per modality (over the fold's training patients who have it).
        names: feature names per modality.
    """

    modalities: list[str]
    blocks: dict[str, np.ndarray]
    means: dict[str, np.ndarray]
    names: dict[str, list[str]]


@dataclass
class ClassicalFold:
    """A fitted classical fold model (it takes the place of a deep ``FoldModel`` in a ``TrainedModel``)."""

    fold: int
    estimator: Any
    features: FoldFeatures
    threshold: float | None
    val_metrics: dict[str, float]
    train: np.ndarray
    result: FoldResult = field(default_factory=lambda: FoldResult({}, 0, float("nan"), []))


def classical_plans(config: ExperimentConfig, modalities: list[str], task: str) -> list[ModelPlan]:
    """The classical baselines of a run (none when ``compare_classical`` is false): a penalised linear model
    (logistic regression, or Cox for survival) and gradient boosting, each on every modality."""
    if not config.compare_classical:
        return []
    linear = "cox_regression" if task == "survival" else "logistic_regression"
    return [ModelPlan(name, CLASSICAL, tuple(modalities), config.fusion) for name in (linear, "gradient_boosting")]


def fold_features(cohort: Cohort, modalities: list[str], inputs: FoldInputs, train: np.ndarray) -> FoldFeatures:
    """Every cohort patient's features through the fold's fitted preprocessing; absent rows at training means."""
    everyone = np.arange(len(cohort.y))
    blocks, means, names = {}, {}, {}
    for name in modalities:
        data = cohort.modalities[name]
        matrix, columns = data.kind.classical_features(inputs.fitted[name], everyone)
        present_train = train[data.present[train]]
        mean = matrix[present_train].mean(axis=0) if len(present_train) else np.zeros(matrix.shape[1])
        matrix = np.where(data.present[:, None], matrix, mean[None, :])
        blocks[name], means[name] = matrix.astype(np.float32), mean
        names[name] = [f"{name}.{c}" for c in columns]
    return FoldFeatures(list(modalities), blocks, means, names)


def design_matrix(features: FoldFeatures, rows: np.ndarray, present: np.ndarray) -> np.ndarray:
    """The model's input for cohort patients ``rows``: modality ``m`` is used where ``present[:, m]`` is True
    and sits at its training means elsewhere (an absent modality, or one outside a Shapley coalition)."""
    return combine_blocks(features, {name: features.blocks[name][rows] for name in features.modalities}, present)


def combine_blocks(features: FoldFeatures, blocks: dict[str, np.ndarray], present: np.ndarray) -> np.ndarray:
    """Concatenate per-modality feature rows ``blocks``, each at its training means where ``present`` is False.

    Args:
        features: the fold's features (training means, model order).
        blocks: ``(n, F_m)`` rows per modality.
        present: ``(n, M)`` bool, columns in model order.
    """
    parts = []
    for column, name in enumerate(features.modalities):
        parts.append(np.where(present[:, column : column + 1], blocks[name], features.means[name][None, :]))
    return np.concatenate(parts, axis=1)


def train_classical(
    plan: ModelPlan,
    cohort: Cohort,
    config: ExperimentConfig,
    splits: Splits,
    prepared: dict[str, Any],
    shared: dict[tuple[tuple[str, ...], int], FoldFeatures] | None = None,
) -> TrainedModel:
    """Fit a classical plan on every fold (inner CV on the fold's training patients) and predict the test set.

    Args:
        plan: a plan from :func:`classical_plans`.
        cohort: the cohort.
        config: the experiment config (seed, folds' preprocessing, threshold rule).
        splits: the run's splits, shared with the deep models.
        prepared: each modality's run-level preparation.
        shared: each fold's features by (modalities, fold), filled and reused across the classical plans of a
            run: every plan on the same modalities sees the same fold preprocessing, so it is fitted once (at
            10^5 patients a fold's fit takes tens of seconds and its features hundreds of MB).
    """
    task, modalities = cohort.task, list(plan.modalities)
    n_outputs = len(cohort.classes) if task == "multiclass" else 1
    presence = np.stack([cohort.modalities[m].present for m in modalities], axis=1)
    trained = TrainedModel(plan)
    shared = {} if shared is None else shared
    test_logits = []
    for fold, (train_idx, val_idx) in enumerate(splits.folds):
        key = (tuple(modalities), fold)
        if key not in shared:
            inputs = fit_fold_inputs(cohort, modalities, config, train_idx, prepared)
            shared[key] = fold_features(cohort, modalities, inputs, train_idx)
            del inputs  # the fold's fitted inputs (a preprocessed copy of every table) are not needed again
        features = shared[key]
        y_train = cohort.y[train_idx]
        time_train = None if cohort.time is None else cohort.time[train_idx]
        x_train = design_matrix(features, train_idx, presence[train_idx])
        estimator = make_estimator(plan.name, task, config.seed + fold, y_train, x_train.shape[1])
        estimator = fit_estimator(estimator, x_train, estimator_target(task, y_train, time_train), train_idx)
        val_logits = logits(estimator, design_matrix(features, val_idx, presence[val_idx]), n_outputs)
        val_scores = scores_from_logits(val_logits, task)
        threshold = None
        if task == "binary":
            threshold = choose_threshold(
                cohort.y[val_idx], val_scores, config.evaluation.threshold, config.evaluation.fixed_threshold
            )
        val_time = None if cohort.time is None else cohort.time[val_idx]
        val_metrics = evaluate_scores(task, cohort.y[val_idx], val_scores, threshold, val_time)
        trained.folds.append(ClassicalFold(fold, estimator, features, threshold, val_metrics, train_idx))  # type: ignore[arg-type]
        test_logits.append(logits(estimator, design_matrix(features, splits.test, presence[splits.test]), n_outputs))
    trained.test = Predictions(np.asarray(splits.test), np.mean(test_logits, axis=0), None)
    thresholds = [f.threshold for f in trained.folds if f.threshold is not None]
    trained.threshold = float(np.mean(thresholds)) if thresholds else None
    return trained
