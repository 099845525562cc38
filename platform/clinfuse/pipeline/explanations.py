"""Explanations of a trained model's test predictions: modality Shapley values, feature attributions, saliency.

The model's prediction is the mean logit of its fold models, and Shapley values (like every attribution used
here) are linear in the explained function, so each fold model is explained with its own preprocessing and the
results are averaged: the ensemble's values are exact and efficiency still holds.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from clinfuse import outputs
from clinfuse.cohort import Cohort, Splits
from clinfuse.config import ExperimentConfig
from clinfuse.explain import ModalityShapley, cohort_summary, model_modality_shapley
from clinfuse.kinds import ExplainContext, FoldView
from clinfuse.logs import stage
from clinfuse.pipeline.artifacts import write_json
from clinfuse.pipeline.usefulness import log_usefulness, modality_usefulness, write_usefulness
from clinfuse.training.data import PatientDataset, make_loader
from clinfuse.training.loop import scores_from_logits
from clinfuse.training.run import FoldModel, TrainedModel


def _explained_class(trained: TrainedModel, task: str, positions: np.ndarray) -> np.ndarray:
    """Logit column explained per patient: 0, or the ensemble's predicted class for multiclass."""
    assert trained.test is not None
    if task != "multiclass":
        return np.zeros(len(positions), dtype=int)
    return trained.test.logits[positions].argmax(axis=1)


def _fold_shapley(
    fold: FoldModel,
    trained: TrainedModel,
    cohort: Cohort,
    indices: np.ndarray,
    classes: np.ndarray,
    n_outputs: int,
) -> ModalityShapley:
    """One fold model's values; for multiclass, each patient's explained class is picked from all classes."""
    dataset = PatientDataset(indices, cohort, list(trained.plan.modalities), fold.inputs)
    loader = make_loader(dataset, 256, False, 0)
    results = [model_modality_shapley(fold.model, loader, output_index=k) for k in range(n_outputs)]
    if n_outputs == 1:
        return results[0]
    rows = np.arange(len(indices))
    pick = dataclasses.replace(results[0])
    for field in ("phi", "f_x", "f_empty", "coalition_values"):
        stacked = np.stack([getattr(r, field) for r in results])
        setattr(pick, field, stacked[classes, rows])
    pick.output_index = classes
    return pick


def _average(results: list[ModalityShapley]) -> ModalityShapley:
    mean = dataclasses.replace(results[0])
    for field in ("phi", "f_x", "f_empty", "coalition_values"):
        setattr(mean, field, np.mean([getattr(r, field) for r in results], axis=0))
    if all(r.gates is not None for r in results):
        mean.gates = np.mean([r.gates for r in results], axis=0)
    return mean


def explain_run(
    trained: TrainedModel,
    cohort: Cohort,
    splits: Splits,
    pseudo_ids: list[str],
    config: ExperimentConfig,
    run_dir: Path,
    device: torch.device,
) -> pd.DataFrame:
    """Write ``contributions.csv``, ``modality_summary.json``, ``modality_importance.json``/``.csv``,
    ``features_<m>.csv`` and ``overlays/``; log the SAGE values to the active MLflow run.

    Explains at most ``config.explain.max_patients`` test patients (in test order); usefulness (SAGE) is
    computed on every test patient, and per fold on its validation patients.
    """
    assert trained.test is not None
    positions = np.arange(min(len(trained.test.index), config.explain.max_patients))
    indices = trained.test.index[positions]
    classes = _explained_class(trained, cohort.task, positions)
    n_outputs = trained.test.logits.shape[1]
    for fold in trained.folds:
        fold.model.to("cpu")
    with stage("modality Shapley", patients=len(indices), folds=len(trained.folds)):
        folds = [_fold_shapley(f, trained, cohort, indices, classes, n_outputs) for f in trained.folds]
        result = _average(folds)
    result.index = indices
    scores = scores_from_logits(trained.test.logits[positions], cohort.task)
    prob = scores if scores.ndim == 1 else scores[np.arange(len(positions)), classes]
    labels = None if cohort.task == "survival" else [cohort.classes[k] for k in cohort.y[indices]]
    frame = result.to_frame(
        patients=[pseudo_ids[i] for i in indices],
        labels=labels if labels is not None else cohort.y[indices],
        probs=prob,
        class_names=cohort.classes,
    )
    frame.to_csv(run_dir / outputs.CONTRIBUTIONS, index=False)
    predicted = classes if cohort.task == "multiclass" else None
    if cohort.task == "binary":
        predicted = (prob >= (trained.threshold if trained.threshold is not None else 0.5)).astype(int)
    usefulness = modality_usefulness(trained, cohort, splits, config, result)
    write_usefulness(usefulness, run_dir)
    log_usefulness(usefulness)
    summary = cohort_summary(
        result,
        labels=cohort.y[indices],
        predictions=predicted,
        class_names=cohort.classes if cohort.task != "survival" else None,
    )
    write_json(run_dir / outputs.MODALITY_SUMMARY, {**summary, **usefulness.summary()})
    if config.explain.feature_attributions:
        views = [_fold_view(f, trained, cohort, splits) for f in trained.folds]
        for column, name in enumerate(trained.plan.modalities):
            data = cohort.modalities[name]
            context = ExplainContext(
                modality=name,
                data=data,
                column=column,
                folds=views,
                indices=indices,
                classes=classes,
                prob=prob,
                pseudo_ids=pseudo_ids,
                run_dir=run_dir,
                seed=config.seed,
                max_panels=config.explain.saliency_patients,
            )
            with stage(f"explain {name} ({data.type})", patients=len(indices)):
                data.kind.explain(context)
    for fold in trained.folds:
        fold.model.to(device)
    return frame


def _fold_view(fold: FoldModel, trained: TrainedModel, cohort: Cohort, splits: Splits) -> FoldView:
    """A fold model with what kinds need to explain it: its fitted inputs and cached embeddings on demand."""
    modalities = list(trained.plan.modalities)

    def embed(indices: np.ndarray) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, Any]]:
        dataset = PatientDataset(indices, cohort, modalities, fold.inputs)
        batch = next(iter(make_loader(dataset, len(dataset), False, 0)))
        inputs = {m: batch[m] for m in modalities}
        with torch.no_grad():
            embeddings = fold.model.encode(inputs, batch["present"])
        return embeddings, batch["present"], inputs

    return FoldView(fold.fold, fold.model, fold.inputs.fitted, splits.folds[fold.fold][0], embed)
