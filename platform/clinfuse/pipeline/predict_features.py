"""``clinfuse predict --explain``: each new patient's top features, from the kinds' own explainers.

The logged model is explained the way ``clinfuse run`` explains its test patients (each kind's
:meth:`~clinfuse.kinds.ModalityKind.explain`, averaged over the fold models), with two differences: the inputs
are the new cohort's, read through the logged model's restored preprocessing, and the training background of
table kinds is the summary the model carries (``TableFitted.background``: k-means centres of at least 5
training patients each, never a training patient's row). Kinds that attribute named features (tabular
variables, genes, signal channels) give per-patient ``top_features_<modality>`` text and rows of the long
``<out>_features.csv``; image kinds give saliency overlays of the most confident patients only.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from clinfuse.cohort import Cohort
from clinfuse.kinds import ExplainContext, Fitted, FoldView, get_kind
from clinfuse.logs import stage
from clinfuse.outputs import features_file
from clinfuse.training.inference import FoldEnsemble, PreparedInputs

TOP_FEATURES = 3
# How many features of each modality the external-validation report ranks.
REPORT_FEATURES = 10


@dataclass
class PatientFeatures:
    """Feature attributions of the predicted patients.

    Args:
        long: ``patient, modality, feature, value, attribution`` (plus ``base_value`` for table kinds).
        top: modality -> one text per cohort patient, ``"marker_a +0.41; bmi -0.12"`` (empty when absent).
        overlays: the folder of saliency figures, when a kind wrote any.
    """

    long: pd.DataFrame
    top: dict[str, list[str]] = field(default_factory=dict)
    overlays: Path | None = None

    def ranking(self, top: int = REPORT_FEATURES) -> dict[str, list[dict[str, Any]]]:
        """Per modality, the features with the largest mean |attribution| over the cohort (aggregates only)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for modality, part in self.long.groupby("modality", sort=False):
            stats = part.assign(abs=part["attribution"].abs()).groupby("feature", sort=False)
            frame = pd.DataFrame({"mean_abs": stats["abs"].mean(), "mean": stats["attribution"].mean()})
            frame = frame.sort_values("mean_abs", ascending=False, kind="stable").head(top)
            out[str(modality)] = [
                {"feature": str(f), "mean_abs_attribution": float(a), "mean_attribution": float(m)}
                for f, a, m in zip(frame.index, frame["mean_abs"], frame["mean"], strict=True)
            ]
        return out


class _CohortFitted(Fitted):
    """A fold's restored preprocessing bound to the new cohort: ``item(i)`` is cohort patient ``i``'s input.

    Kinds read their own attributes of the fitted object (``groups``, ``background``, ``rate``...); they are
    passed through to the restored one.
    """

    def __init__(self, fitted: Fitted, inputs: torch.Tensor | None) -> None:
        self._fitted, self._inputs = fitted, inputs
        self.input_shape, self.feature_names = fitted.input_shape, fitted.feature_names

    def item(self, patient: int) -> torch.Tensor:
        assert self._inputs is not None, "item() of a modality absent from every patient"
        return self._inputs[patient]

    def transform(self, raw: Any) -> torch.Tensor:
        return self._fitted.transform(raw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_fitted"], name)


def _embedder(
    model: torch.nn.Module, inputs: dict[str, torch.Tensor], present: torch.Tensor
) -> Callable[[np.ndarray], tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]]:
    def embed(indices: np.ndarray) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
        rows = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        chosen = {m: x.index_select(0, rows) for m, x in inputs.items()}
        with torch.no_grad():
            embeddings = model.encode(chosen, present[rows])
        return embeddings, present[rows], chosen

    return embed


def explain_features(
    model: FoldEnsemble,
    states: dict[str, dict[str, Any]],
    prepared: PreparedInputs,
    cohort: Cohort,
    *,
    patients: list[str],
    classes: np.ndarray,
    prob: np.ndarray,
    overlays: Path,
    seed: int,
    max_panels: int,
    max_patients: int,
) -> PatientFeatures:
    """Attribute every patient's prediction to the features of each of its modalities.

    Args:
        model: the logged fold ensemble (``clinfuse.training.inference``).
        states: each fold's fitted preprocessing states.
        prepared: each fold's inputs and the presence, as :func:`~clinfuse.training.inference.ensemble_inputs`
            returns them for the cohort's input frame (one row per cohort patient, in cohort order); the
            caller's predictions share them.
        cohort: the new cohort.
        patients: the id written for each patient (pseudonyms unless ``--keep-ids``).
        classes: the logit column explained per patient (0, or the predicted class for multiclass).
        prob: each patient's predicted probability (or risk), which picks the patients that get figures.
        overlays: where saliency figures go (``overlays/<modality>/<patient>.png``); removed when empty.
        seed: seeds the explainers.
        max_panels: how many patients per modality get a saliency figure.
        max_patients: the first ``max_patients`` patients (cohort order) are explained; the cost of shap's
            explainers grows with each patient (docs/scaling.md), the others' top features stay empty.
    """
    spec = model.spec
    per_fold, present = prepared
    views = []
    for k, (fold_model, inputs) in enumerate(zip(model.folds, per_fold, strict=True)):
        fold_model.eval()
        fitted: dict[str, Fitted] = {
            e["name"]: _CohortFitted(
                get_kind(e["kind"]).restore(e["description"], states[f"fold{k}"][e["name"]]), inputs.get(e["name"])
            )
            for e in spec["modalities"]
        }
        views.append(FoldView(k, fold_model, fitted, np.zeros(0, dtype=int), _embedder(fold_model, inputs, present)))
    explained = np.arange(min(cohort.n, max_patients))
    frames, top = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for column, entry in enumerate(spec["modalities"]):
            name = entry["name"]
            data = cohort.modalities.get(name)
            if data is None or not present[explained, column].any():
                continue
            context = ExplainContext(
                modality=name,
                data=data,
                column=column,
                folds=views,
                indices=explained,
                classes=np.asarray(classes)[explained],
                prob=np.asarray(prob)[explained],
                pseudo_ids=patients,
                run_dir=folder,
                seed=seed,
                max_panels=max_panels,
            )
            with stage(f"explain {name} ({data.type})", patients=int(present[explained, column].sum())):
                data.kind.explain(context)
            written = folder / features_file(name)
            if written.is_file():
                part = pd.read_csv(written, dtype={"patient": str})
                frames.append(part.assign(modality=name))
                top[name] = _top_text(part, patients)
        figures = folder / "overlays"
        kept = None
        if figures.is_dir() and any(figures.rglob("*.png")):
            shutil.rmtree(overlays, ignore_errors=True)
            kept = Path(shutil.copytree(figures, overlays))
    columns = ["patient", "modality", "feature", "value", "attribution"]
    long = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    long = long[columns + [c for c in long.columns if c not in columns]]
    return PatientFeatures(long, top, kept)


def _top_text(part: pd.DataFrame, patients: list[str]) -> list[str]:
    """Each patient's ``TOP_FEATURES`` largest attributions as ``feature +0.41; feature -0.12``."""
    ordered = part.assign(abs=part["attribution"].abs()).sort_values(["patient", "abs"], ascending=[True, False])
    text = {
        str(patient): "; ".join(f"{f} {a:+.3g}" for f, a in zip(rows["feature"], rows["attribution"], strict=True))
        for patient, rows in ordered.groupby("patient", sort=False).head(TOP_FEATURES).groupby("patient", sort=False)
    }
    return [text.get(str(p), "") for p in patients]
