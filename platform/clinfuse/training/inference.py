"""A trained model (its fold ensemble) rebuilt from a JSON spec, and predictions from raw patient rows.

The logged MLflow model stores the spec, the ensemble's weights and each fold's fitted preprocessing state;
:func:`model_from_spec` and :func:`predict_frame` turn them back into predictions. Each modality's kind reads
its columns of the input frame and applies the same fitted preprocessing as training did
(``Fitted.transform``), so there is one reader of the spec and one preprocessing path. The prediction is the
mean fold logit, exactly as the run computed its test predictions.

Input frame (one row per patient): the columns each kind names (``ModalityKind.frame_columns``):
tabular/genomic ``<modality>.<column>`` per raw feature column; image ``<modality>.path``; signal
``<modality>.path`` and ``<modality>.sampling_rate``. A modality is absent for a row when its columns are empty.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from clinfuse.cohort import Cohort
from clinfuse.config import ExperimentConfig, FusionConfig, saved_fusion
from clinfuse.encoders import EncoderSpec
from clinfuse.fusion import MultimodalModel, build_model
from clinfuse.kinds import get_kind
from clinfuse.outputs import ModalitySpecEntry, ModelSpec
from clinfuse.training.data import encoder_specs, kind_settings
from clinfuse.training.loop import scores_from_logits
from clinfuse.training.run import TrainedModel, n_outputs_for
from clinfuse.training.survival import survival_probability


class FoldEnsemble(nn.Module):
    """The fold models of one trained model; predictions average their logits.

    Args:
        models: one :class:`MultimodalModel` per fold.
        spec: the :func:`model_spec` description (modalities, their kinds and raw inputs, task, classes).
    """

    def __init__(self, models: list[MultimodalModel], spec: dict[str, Any]) -> None:
        super().__init__()
        self.folds = nn.ModuleList(models)
        self.spec = spec


def model_spec(trained: TrainedModel, cohort: Cohort, config: ExperimentConfig) -> ModelSpec:
    """The JSON description :func:`model_from_spec` rebuilds the ensemble from (no patient data inside)."""
    modalities = [
        ModalitySpecEntry(
            name=name,
            kind=cohort.modalities[name].type,
            description=cohort.modalities[name].kind.describe(
                cohort.modalities[name], kind_settings(config, cohort, name)
            ),
        )
        for name in trained.plan.modalities
    ]
    folds = [
        {
            m: spec.to_json()
            for m, spec in encoder_specs(cohort, list(trained.plan.modalities), config, f.inputs).items()
        }
        for f in trained.folds
    ]
    return ModelSpec(
        task=cohort.task,
        classes=cohort.classes,
        model_name=trained.plan.name,
        modalities=modalities,
        fusion=trained.plan.fusion.model_dump(mode="json"),
        n_outputs=n_outputs_for(cohort),
        threshold=trained.threshold,
        encoders=folds,
    )


def ensemble_of(
    trained: TrainedModel, cohort: Cohort, config: ExperimentConfig
) -> tuple[FoldEnsemble, dict[str, dict[str, Any]]]:
    """The fold models as one module and each fold's fitted preprocessing state, keyed ``fold<k>``."""
    models = [f.model.cpu().eval() for f in trained.folds]
    ensemble = FoldEnsemble(models, model_spec(trained, cohort, config))
    states = {f"fold{f.fold}": {m: fitted.state() for m, fitted in f.inputs.fitted.items()} for f in trained.folds}
    return ensemble, states


def model_from_spec(spec: dict[str, Any]) -> FoldEnsemble:
    """Rebuild the (untrained) fold ensemble described by :func:`model_spec`."""
    fusion = FusionConfig.model_validate(saved_fusion(spec["fusion"]))
    order = [entry["name"] for entry in spec["modalities"]]
    models = [
        build_model({m: EncoderSpec.from_json(fold[m]) for m in order}, fusion, spec["n_outputs"])
        for fold in spec["encoders"]
    ]
    return FoldEnsemble(models, spec).eval()


# Each fold's model inputs and the presence ``(n, modalities)``, as :func:`ensemble_inputs` returns them.
PreparedInputs = tuple[list[dict[str, torch.Tensor]], torch.Tensor]


def _memo_key(name: str, state: Any) -> str | None:
    """A key for states that are plain data (identical across folds, e.g. an image size); None otherwise."""
    try:
        return name + json.dumps(state, sort_keys=True)
    except TypeError:
        return None


def ensemble_inputs(model: FoldEnsemble, states: dict[str, dict[str, Any]], frame: pd.DataFrame) -> PreparedInputs:
    """Each fold's model inputs of the rows of an input frame, and the presence ``(n, modalities)``.

    A modality absent from every row gets no input (its encoder never runs; the missing embedding is used).
    """
    n = len(frame)
    entries = model.spec["modalities"]
    raw, presence = {}, []
    for entry in entries:
        values, present = get_kind(entry["kind"]).from_frame(entry["name"], entry["description"], frame)
        raw[entry["name"]] = values
        presence.append(present)
    present_all = np.stack(presence, axis=1) if presence else np.zeros((n, 0), dtype=bool)
    memo: dict[str, torch.Tensor] = {}
    per_fold = []
    for k in range(len(model.folds)):
        inputs = {}
        for column, entry in enumerate(entries):
            name = entry["name"]
            rows = np.flatnonzero(present_all[:, column])
            if not len(rows):
                continue
            state = states[f"fold{k}"][name]
            key = _memo_key(name, state)
            if key is None or key not in memo:
                fitted = get_kind(entry["kind"]).restore(entry["description"], state)
                values = fitted.transform(raw[name])
                full = torch.zeros((n, *values.shape[1:]), dtype=values.dtype)
                full[torch.as_tensor(rows)] = values
                if key is None:
                    inputs[name] = full
                    continue
                memo[key] = full
            inputs[name] = memo[key]
        per_fold.append(inputs)
    return per_fold, torch.as_tensor(present_all)


def ensemble_logits(model: FoldEnsemble, states: dict[str, dict[str, Any]], frame: pd.DataFrame) -> np.ndarray:
    """The mean fold logit ``(n, outputs)`` of the rows of an input frame (as the run's test predictions)."""
    return fold_mean_logits(model, ensemble_inputs(model, states, frame))


def fold_mean_logits(model: FoldEnsemble, prepared: PreparedInputs) -> np.ndarray:
    """The mean fold logit ``(n, outputs)`` of inputs already prepared by :func:`ensemble_inputs`."""
    per_fold, present = prepared
    logits = []
    for fold_model, inputs in zip(model.folds, per_fold, strict=True):
        with torch.no_grad():
            logits.append(fold_model.eval()(inputs, present).logits.double().numpy())
    return np.mean(logits, axis=0)


def output_frame(spec: dict[str, Any], logits: np.ndarray, index: pd.Index | None = None) -> pd.DataFrame:
    """Scores and decisions from ensemble logits.

    Binary: ``prob`` (positive class), ``prob_<class>`` for both classes and ``prediction`` (the class chosen
    with the validation threshold ``spec["threshold"]``); multiclass: ``prob_<class>`` and ``prediction``
    (argmax); survival: ``risk`` (log relative hazard) and ``survival_t<h>`` at each horizon of
    ``spec["baseline"]`` (Breslow baseline hazard fitted on the training folds).
    """
    scores = scores_from_logits(logits, spec["task"])
    classes = [str(c) for c in spec["classes"]]
    if spec["task"] == "binary":
        threshold = 0.5 if spec.get("threshold") is None else float(spec["threshold"])
        frame = pd.DataFrame({"prob": scores, f"prob_{classes[0]}": 1.0 - scores, f"prob_{classes[1]}": scores})
        frame["prediction"] = np.where(scores >= threshold, classes[1], classes[0])
    elif spec["task"] == "multiclass":
        frame = pd.DataFrame(scores, columns=[f"prob_{c}" for c in classes])
        frame["prediction"] = np.asarray(classes, dtype=object)[scores.argmax(axis=1)]
    else:
        frame = pd.DataFrame({"risk": scores})
        baseline = spec.get("baseline")
        if baseline:
            horizons = [float(h) for h in baseline["horizons"]]
            values = survival_probability(baseline["times"], baseline["cumhaz"], scores, horizons)
            for column, h in enumerate(horizons):
                frame[f"survival_t{h:g}"] = values[:, column]
    if index is not None:
        frame.index = index
    return frame


def predict_frame(model: FoldEnsemble, states: dict[str, dict[str, Any]], frame: pd.DataFrame) -> pd.DataFrame:
    """Predict from raw rows (format in the module docstring); the columns of :func:`output_frame`."""
    return output_frame(model.spec, ensemble_logits(model, states, frame), frame.index)


def cohort_input_frame(cohort: Cohort, modalities: list[str], indices: np.ndarray) -> pd.DataFrame:
    """The documented input frame for cohort patients ``indices`` (used for the model's input example)."""
    columns: dict[str, Any] = {}
    for name in modalities:
        data = cohort.modalities[name]
        columns.update(data.kind.to_frame(name, data, np.asarray(indices)))
    return pd.DataFrame(columns)
