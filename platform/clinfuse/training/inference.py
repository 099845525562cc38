"""A trained model (its fold ensemble) rebuilt from a JSON spec, and predictions from raw patient rows.

``clinfuse.tracking`` stores the spec, the ensemble's weights and the per-fold preprocessors as the MLflow
model's artifacts and calls :func:`model_from_spec` and :func:`predict_frame` when the model is loaded. The
prediction is the mean fold logit, exactly as the run computed its test predictions.

Input frame (one row per patient) of :func:`predict_frame`:
- tabular/genomic modality ``m``: one column ``m.<column>`` per raw feature column of its table;
- image modality ``m``: one column ``m.path`` with the image's absolute path.
A modality is absent for a row when all its columns are empty (NaN/None/"").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from clinfuse.cohort import Cohort, image_transforms
from clinfuse.config import ExperimentConfig, FusionConfig, validate_config
from clinfuse.errors import RunError
from clinfuse.fusion import ModalitySpec, MultimodalModel, build_model
from clinfuse.training.data import image_size_for, modality_specs
from clinfuse.training.loop import scores_from_logits
from clinfuse.training.run import TrainedModel, n_outputs_for


class FoldEnsemble(nn.Module):
    """The fold models of one trained model; predictions average their logits.

    Args:
        models: one :class:`MultimodalModel` per fold.
        spec: the :func:`model_spec` description (modalities, raw columns, task, classes).
    """

    def __init__(self, models: list[MultimodalModel], spec: dict[str, Any]) -> None:
        super().__init__()
        self.folds = nn.ModuleList(models)
        self.spec = spec


def model_spec(trained: TrainedModel, cohort: Cohort, config: ExperimentConfig) -> dict[str, Any]:
    """The JSON description :func:`model_from_spec` rebuilds the ensemble from (no patient data inside)."""
    modalities = []
    for name in trained.plan.modalities:
        data = cohort.modalities[name]
        entry: dict[str, Any] = {"name": name, "type": data.type}
        if data.type == "image":
            dims = int(data.spatial_dims)
            entry.update(spatial_dims=dims, size=image_size_for(config.training.image_size, dims))
        else:
            entry.update(
                numeric=list(data.numeric),
                categorical=list(data.categorical),
                columns=list(data.frame.columns),
            )
        modalities.append(entry)
    return {
        "task": cohort.task,
        "classes": cohort.classes,
        "model_name": trained.plan.name,
        "modalities": modalities,
        "fusion": trained.plan.fusion.model_dump(mode="json"),
        "config": config.model_dump(mode="json"),
        "n_outputs": n_outputs_for(cohort),
        "threshold": trained.threshold,
        "fold_inputs": [_fold_inputs(trained, cohort, config, f.tables) for f in trained.folds],
    }


def _fold_inputs(trained: TrainedModel, cohort: Cohort, config: ExperimentConfig, tables: Any) -> dict:
    """Per tabular modality of one fold: its input width and gene-group mask (both depend on the fold's fit)."""
    specs = modality_specs(cohort, list(trained.plan.modalities), config, tables)
    return {
        m: {
            "in_features": int(spec.in_features),
            "gene_mask": None if spec.gene_mask is None else np.asarray(spec.gene_mask, dtype=int).tolist(),
        }
        for m, spec in specs.items()
        if spec.type != "image"
    }


def ensemble_of(
    trained: TrainedModel, cohort: Cohort, config: ExperimentConfig
) -> tuple[FoldEnsemble, dict[str, dict[str, Any]]]:
    """The fold models as one module and their fitted preprocessors keyed ``fold<k>``."""
    models = [f.model.cpu().eval() for f in trained.folds]
    ensemble = FoldEnsemble(models, model_spec(trained, cohort, config))
    return ensemble, {f"fold{f.fold}": f.tables.preprocessors for f in trained.folds}


def model_from_spec(spec: dict[str, Any]) -> FoldEnsemble:
    """Rebuild the (untrained) fold ensemble described by :func:`model_spec`."""
    config = validate_config(spec["config"], source="model spec")
    fusion = FusionConfig.model_validate(spec["fusion"])
    models = [
        build_model(_specs_from_meta(spec, config, inputs), fusion, spec["n_outputs"]) for inputs in spec["fold_inputs"]
    ]
    return FoldEnsemble(models, spec).eval()


def _specs_from_meta(meta: dict[str, Any], config: ExperimentConfig, inputs: dict[str, dict]) -> dict:
    specs = {}
    for entry in meta["modalities"]:
        encoder = config.encoder_for(entry["name"])
        if entry["type"] == "image":
            specs[entry["name"]] = ModalitySpec(
                type="image", encoder=encoder, spatial_dims=entry["spatial_dims"], image_size=entry["size"]
            )
        else:
            mask = inputs[entry["name"]]["gene_mask"]
            specs[entry["name"]] = ModalitySpec(
                type=entry["type"],
                encoder=encoder,
                in_features=inputs[entry["name"]]["in_features"],
                gene_mask=None if mask is None else np.asarray(mask, dtype=bool),
            )
    return specs


def _empty(values: pd.Series) -> pd.Series:
    return values.isna() | values.astype(str).str.strip().isin(["", "nan", "None"])


def _modality_inputs(spec: dict[str, Any], frame: pd.DataFrame) -> tuple[dict[str, Any], np.ndarray]:
    """Raw per-modality inputs and the presence matrix ``(n, M)`` of an input frame."""
    raw: dict[str, Any] = {}
    presence = []
    for entry in spec["modalities"]:
        name = entry["name"]
        if entry["type"] == "image":
            column = f"{name}.path"
            if column not in frame.columns:
                raise RunError(f"input frame: missing column '{column}' (image path of modality '{name}')")
            present = ~_empty(frame[column]).to_numpy()
            raw[name] = frame[column].tolist()
        else:
            columns = [f"{name}.{c}" for c in entry["columns"]]
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise RunError(f"input frame: missing columns {missing[:3]} of modality '{name}'; see docs/tracking.md")
            table = frame[columns].copy()
            table.columns = entry["columns"]
            for column in entry["numeric"]:
                table[column] = pd.to_numeric(table[column], errors="coerce").astype(np.float64)
            for column in entry["categorical"]:
                table[column] = pd.Series(table[column].to_numpy(dtype=object), index=table.index, dtype=object)
            present = table.notna().any(axis=1).to_numpy()
            raw[name] = table
        presence.append(present)
    return raw, np.stack(presence, axis=1)


def predict_frame(model: FoldEnsemble, preprocessors: dict[str, dict[str, Any]], frame: pd.DataFrame) -> pd.DataFrame:
    """Predict from raw rows (format in the module docstring): ``prob`` / ``prob_<class>`` / ``risk``."""
    spec = model.spec
    raw, presence = _modality_inputs(spec, frame)
    n = len(frame)
    entries = spec["modalities"]
    images = {}
    for column, entry in enumerate(entries):
        if entry["type"] == "image":
            transform = image_transforms(entry["spatial_dims"], entry["size"], augment=False)
            volumes = torch.zeros((n, 1, *entry["size"]), dtype=torch.float32)
            for i in np.flatnonzero(presence[:, column]):
                volumes[i] = torch.as_tensor(np.asarray(transform({"image": str(raw[entry["name"]][i])})["image"]))
            images[entry["name"]] = volumes
    present = torch.as_tensor(presence)
    logits = []
    for k, fold_model in enumerate(model.folds):
        inputs = dict(images)
        for column, entry in enumerate(entries):
            if entry["type"] == "image":
                continue
            rows = np.flatnonzero(presence[:, column])
            # No present row: the encoder is never run, so a placeholder column is enough.
            matrix = np.zeros((n, 1), dtype=np.float32)
            if len(rows):
                transformed = np.asarray(
                    preprocessors[f"fold{k}"][entry["name"]].transform(raw[entry["name"]].iloc[rows]),
                    dtype=np.float32,
                )
                matrix = np.zeros((n, transformed.shape[1]), dtype=np.float32)
                matrix[rows] = transformed
            inputs[entry["name"]] = torch.from_numpy(matrix)
        with torch.no_grad():
            logits.append(fold_model.eval()(inputs, present).logits.double().numpy())
    scores = scores_from_logits(np.mean(logits, axis=0), spec["task"])
    if spec["task"] == "binary":
        return pd.DataFrame({"prob": scores}, index=frame.index)
    if spec["task"] == "multiclass":
        return pd.DataFrame(scores, columns=[f"prob_{c}" for c in spec["classes"]], index=frame.index)
    return pd.DataFrame({"risk": scores}, index=frame.index)


def cohort_input_frame(cohort: Cohort, modalities: list[str], indices: np.ndarray) -> pd.DataFrame:
    """The documented input frame for cohort patients ``indices`` (used for the model's input example)."""
    columns: dict[str, Any] = {}
    for name in modalities:
        data = cohort.modalities[name]
        if data.type == "image":
            columns[f"{name}.path"] = [str(data.paths[i]) if data.present[i] else None for i in indices]
        else:
            part = data.frame.iloc[indices]
            for column in part.columns:
                columns[f"{name}.{column}"] = part[column].to_numpy()
    return pd.DataFrame(columns)
