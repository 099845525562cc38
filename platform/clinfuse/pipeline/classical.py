"""The classical baselines of a run: fitted on the run's folds, tracked as child runs, explained by modality.

Their modality contributions come from the same exact Shapley game as the deep models' (players: the
modalities a patient has; a modality outside a coalition sits at its features' training means, which is also
how the classical model sees an absent modality), so the report can set deep and classical attributions side
by side. They are written to ``classical_contributions.csv`` (the ``contributions.csv`` layout plus a
``model`` column).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from clinfuse import outputs
from clinfuse.cohort import Cohort, Splits
from clinfuse.config import ExperimentConfig
from clinfuse.explain import ModalityShapley, modality_shapley
from clinfuse.tracking import log_final_metrics, log_params_flat, start_child_run
from clinfuse.training.classical import ClassicalFold, classical_plans, combine_blocks, logits, train_classical
from clinfuse.training.estimators import chosen_penalty
from clinfuse.training.evaluate import model_metrics
from clinfuse.training.loop import scores_from_logits
from clinfuse.training.run import TrainedModel


def run_classical(
    config: ExperimentConfig,
    cohort: Cohort,
    modalities: list[str],
    splits: Splits,
    prepared: dict[str, Any],
    metrics: dict[str, Any],
) -> list[TrainedModel]:
    """Fit every classical baseline (each in its own MLflow child run) and add its metrics to ``metrics``."""
    trained: list[TrainedModel] = []
    shared: dict = {}
    for plan in classical_plans(config, modalities, cohort.task):
        with start_child_run(plan.name, {"model": plan.name, "kind": plan.kind}):
            model = train_classical(plan, cohort, config, splits, prepared, shared)
            metrics[plan.name] = model_metrics(model, cohort, splits, config.evaluation, config.seed)
            for fold in model.folds:
                log_final_metrics(f"fold{fold.fold}_val", fold.val_metrics)
                penalty = chosen_penalty(fold.estimator)
                log_params_flat({f"fold{fold.fold}_{key}": value for key, value in penalty.items()})
            log_final_metrics("test", metrics[plan.name]["test"])
        trained.append(model)
    return trained


def classical_shapley(
    trained: TrainedModel, cohort: Cohort, indices: np.ndarray, classes: np.ndarray
) -> ModalityShapley:
    """Exact modality Shapley values of a classical fold ensemble (mean over its folds) on cohort ``indices``.

    Args:
        trained: a model from :func:`run_classical`.
        cohort: the cohort.
        indices: cohort indices of the explained patients.
        classes: the logit column explained per patient (0, or the ensemble's predicted class).
    """
    modalities = list(trained.plan.modalities)
    present = np.stack([cohort.modalities[m].present[indices] for m in modalities], axis=1)
    n_outputs = len(cohort.classes) if cohort.task == "multiclass" else 1
    rows = np.arange(len(indices))
    folds = []
    for fold in trained.folds:
        assert isinstance(fold, ClassicalFold)
        features = fold.features
        blocks = {m: torch.as_tensor(features.blocks[m][indices]) for m in modalities}

        def play(chunk: dict[str, torch.Tensor], mask: torch.Tensor, fold: ClassicalFold = fold) -> torch.Tensor:
            x = combine_blocks(fold.features, {m: v.numpy() for m, v in chunk.items()}, mask.numpy())
            return torch.as_tensor(logits(fold.estimator, x, n_outputs))

        per_class = [modality_shapley(play, blocks, present, modalities, output_index=k) for k in range(n_outputs)]
        pick = per_class[0]
        if n_outputs > 1:
            for name in ("phi", "f_x", "f_empty", "coalition_values"):
                setattr(pick, name, np.stack([getattr(r, name) for r in per_class])[classes, rows])
            pick.output_index = classes
        folds.append(pick)
    result = folds[0]
    for name in ("phi", "f_x", "f_empty", "coalition_values"):
        setattr(result, name, np.mean([getattr(r, name) for r in folds], axis=0))
    result.index = np.asarray(indices)
    return result


def explain_classical(
    trained: list[TrainedModel],
    cohort: Cohort,
    pseudo_ids: list[str],
    max_patients: int,
    run_dir: Path,
) -> pd.DataFrame | None:
    """Write ``classical_contributions.csv``: every classical model's modality Shapley values on the first
    ``max_patients`` test patients (the patients the primary model's contributions cover)."""
    frames = []
    for model in trained:
        assert model.test is not None
        positions = np.arange(min(len(model.test.index), max_patients))
        indices = model.test.index[positions]
        scores = scores_from_logits(model.test.logits[positions], cohort.task)
        classes = scores.argmax(axis=1) if scores.ndim == 2 else np.zeros(len(positions), dtype=int)
        prob = scores if scores.ndim == 1 else scores[positions, classes]
        result = classical_shapley(model, cohort, indices, classes)
        labels = cohort.y[indices] if cohort.task == "survival" else [cohort.classes[k] for k in cohort.y[indices]]
        frame = result.to_frame(
            patients=[pseudo_ids[i] for i in indices], labels=labels, probs=prob, class_names=cohort.classes
        )
        frame.insert(0, "model", model.plan.name)
        frames.append(frame)
    if not frames:
        return None
    combined = pd.concat(frames, ignore_index=True)
    combined.to_csv(run_dir / outputs.CLASSICAL_CONTRIBUTIONS, index=False)
    return combined
