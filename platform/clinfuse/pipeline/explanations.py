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

from clinfuse.cohort import Cohort, Splits
from clinfuse.config import ExperimentConfig
from clinfuse.explain import (
    ModalityShapley,
    cohort_summary,
    gene_attributions,
    image_saliency,
    model_modality_shapley,
    save_overlay,
    tabular_attributions,
)
from clinfuse.pipeline.artifacts import write_json
from clinfuse.training.data import ImageStore, PatientDataset, make_loader
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
    images: dict[str, ImageStore],
    classes: np.ndarray,
    n_outputs: int,
) -> ModalityShapley:
    """One fold model's values; for multiclass, each patient's explained class is picked from all classes."""
    dataset = PatientDataset(indices, cohort, list(trained.plan.modalities), fold.tables, images)
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
    images: dict[str, ImageStore],
    pseudo_ids: list[str],
    config: ExperimentConfig,
    run_dir: Path,
    device: torch.device,
) -> pd.DataFrame:
    """Write ``contributions.csv``, ``modality_summary.json``, ``features_<m>.csv`` and ``overlays/``.

    Explains at most ``config.explain.max_patients`` test patients (in test order).
    """
    assert trained.test is not None
    positions = np.arange(min(len(trained.test.index), config.explain.max_patients))
    indices = trained.test.index[positions]
    classes = _explained_class(trained, cohort.task, positions)
    n_outputs = trained.test.logits.shape[1]
    stores = {m: images[m] for m in trained.plan.modalities if m in images}
    for fold in trained.folds:
        fold.model.to("cpu")
    folds = [_fold_shapley(f, trained, cohort, indices, stores, classes, n_outputs) for f in trained.folds]
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
    frame.to_csv(run_dir / "contributions.csv", index=False)
    predicted = classes if cohort.task == "multiclass" else None
    if cohort.task == "binary":
        predicted = (prob >= (trained.threshold if trained.threshold is not None else 0.5)).astype(int)
    write_json(
        run_dir / "modality_summary.json",
        cohort_summary(
            result,
            labels=cohort.y[indices],
            predictions=predicted,
            class_names=cohort.classes if cohort.task != "survival" else None,
        ),
    )
    if config.explain.feature_attributions:
        _feature_attributions(trained, cohort, indices, classes, stores, pseudo_ids, splits, run_dir, config)
        _overlays(trained, cohort, indices, classes, prob, stores, pseudo_ids, run_dir, config)
    for fold in trained.folds:
        fold.model.to(device)
    return frame


def _embeddings(
    fold: FoldModel, trained: TrainedModel, cohort: Cohort, indices: np.ndarray, images: dict[str, ImageStore]
) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, Any]]:
    dataset = PatientDataset(indices, cohort, list(trained.plan.modalities), fold.tables, images)
    batch = next(iter(make_loader(dataset, len(dataset), False, 0)))
    inputs = {m: batch[m] for m in trained.plan.modalities}
    with torch.no_grad():
        embeddings = fold.model.encode(inputs, batch["present"])
    return embeddings, batch["present"], inputs


def _feature_attributions(
    trained: TrainedModel,
    cohort: Cohort,
    indices: np.ndarray,
    classes: np.ndarray,
    images: dict[str, ImageStore],
    pseudo_ids: list[str],
    splits: Splits,
    run_dir: Path,
    config: ExperimentConfig,
) -> None:
    """Per-variable (clinical) and per-gene attributions, averaged over fold models by feature name."""
    tabular = [m for m in trained.plan.modalities if cohort.modalities[m].type != "image"]
    for name in tabular:
        data = cohort.modalities[name]
        frames = []
        for fold in trained.folds:
            train_idx = splits.folds[fold.fold][0]
            background_rows = train_idx[data.present[train_idx]]
            background = fold.tables.features[name][background_rows]
            per_class = []
            for k in np.unique(classes):
                rows = indices[classes == k]
                embeddings, present, inputs = _embeddings(fold, trained, cohort, rows, images)
                x = inputs[name].numpy()
                common = dict(
                    embeddings=embeddings,
                    present=present,
                    background=background,
                    output_index=int(k),
                    patient_index=rows,
                    seed=config.seed,
                )
                if data.type == "genomic":
                    result = gene_attributions(fold.model, name, x, gene_names=fold.tables.names[name], **common)
                else:
                    raw = data.frame.iloc[rows]
                    result = tabular_attributions(
                        fold.model,
                        name,
                        x,
                        feature_groups=fold.tables.groups[name],
                        raw_values=raw,
                        feature_names=fold.tables.names[name],
                        **common,
                    )
                per_class.append(result.to_frame())
            frames.append(pd.concat(per_class, ignore_index=True))
        combined = pd.concat(frames, ignore_index=True)
        # A feature a fold model never saw (e.g. a gene outside its top-k) contributes 0 for that fold.
        attribution = combined.groupby(["patient_index", "feature"], sort=False)["attribution"].sum()
        attribution = attribution / len(trained.folds)
        values = combined.groupby(["patient_index", "feature"], sort=False)["value"].first()
        out = pd.DataFrame({"value": values, "attribution": attribution}).reset_index()
        out.insert(0, "patient", [pseudo_ids[i] for i in out.pop("patient_index")])
        out.to_csv(run_dir / f"features_{name}.csv", index=False)


def _overlays(
    trained: TrainedModel,
    cohort: Cohort,
    indices: np.ndarray,
    classes: np.ndarray,
    prob: np.ndarray,
    images: dict[str, ImageStore],
    pseudo_ids: list[str],
    run_dir: Path,
    config: ExperimentConfig,
) -> None:
    """Occlusion saliency of the most confident patients' images, averaged over fold models."""
    for name, store in images.items():
        column = cohort.modality_names.index(name)
        has_image = np.flatnonzero(cohort.presence[indices, column])
        confidence = np.abs(np.asarray(prob, dtype=float) - 0.5)
        chosen = has_image[np.argsort(-confidence[has_image], kind="stable")][: config.explain.saliency_patients]
        for position in chosen:
            patient = indices[position]
            maps = []
            for fold in trained.folds:
                embeddings, present, inputs = _embeddings(fold, trained, cohort, np.array([patient]), images)
                maps.append(image_saliency(fold.model, name, inputs[name], embeddings, present, int(classes[position])))
            pseudo = pseudo_ids[patient]
            save_overlay(
                store.get(int(patient)).numpy(),
                np.mean(maps, axis=0),
                run_dir / "overlays" / f"{pseudo}.png",
                f"{pseudo}: {name} occlusion saliency",
            )
