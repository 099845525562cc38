"""Feature attributions inside one modality, with the patient's other modalities held at their embeddings.

For a patient ``p`` and a modality ``m`` the explained function is one logit of the fused model as a function
of ``m``'s input only: ``f_p(x_m) = fuse({m: encode(x_m), others: cached embeddings of p}, present_p)[:, k]``.
Clinical-type tables are explained with shap's model-agnostic estimators (Exact, Permutation or Partition)
over the preprocessed columns, summed back to original variables; genes with expected gradients (shap's
GradientExplainer). Exact, Permutation and expected gradients run batched over all explained patients at once
(:mod:`.batched_shap`); only Partition calls shap, one explainer per patient. What the attributions add up to
is in :data:`SUMS_TO`; image saliency is in :mod:`.saliency`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import shap
import torch
from torch import Tensor, nn

from clinfuse.explain.batched_shap import PatientsLogit, exact_shapley, expected_gradients, permutation_shapley
from clinfuse.explain.explanation import numeric_data

SUMS_TO: dict[str, str] = {
    "modality": "phi over a patient's present modalities sums to f_x - f_empty: the logit with all of them "
    "minus the logit with every modality on its missing path (exact).",
    "tabular": "a patient's variable attributions sum to f(x) - mean_b f(x with this modality's features "
    "replaced by background row b), other modalities held at the patient's embeddings (exact for Exact, "
    "Permutation and Partition). This is not the modality's phi, whose reference is the missing path.",
    "genomic": "expected gradients: a patient's gene attributions sum approximately (sampling error shrinks "
    "with nsamples) to f(x) - mean_b f(background gene row b), other modalities held fixed; not phi.",
    "image": "occlusion saliency is the logit drop when a patch around each voxel is occluded; it is a map, "
    "it does not sum to the prediction.",
}

Algorithm = Literal["auto", "exact", "permutation", "partition"]


class ModalityLogit(nn.Module):
    """One patient's logit as a function of one modality's input; the other modalities stay fixed.

    The fixed embeddings have batch size 1 and are expanded to whatever batch the explainer sends.

    Args:
        model: a ``MultimodalModel`` (``modalities``, ``encode``, ``fuse``).
        modality: the modality whose input varies.
        embeddings: the patient's cached embeddings, ``(1, D_m)`` per modality.
        present: ``(1, M)`` bool, the patient's presence (``modality`` must be present).
        output_index: logit column returned.
    """

    def __init__(
        self,
        model: nn.Module,
        modality: str,
        embeddings: Mapping[str, Tensor],
        present: Tensor,
        output_index: int = 0,
    ) -> None:
        super().__init__()
        self.model = model
        self.modality = modality
        self.column = list(model.modalities).index(modality)
        self.embeddings = {m: e.detach() for m, e in embeddings.items()}
        self.present = present.bool().reshape(1, -1)
        self.output_index = output_index

    def forward(self, x: Tensor) -> Tensor:
        """``(B, *input)`` → ``(B, 1)`` logit."""
        rows = x.shape[0]
        only_this = torch.zeros(rows, self.present.shape[1], dtype=torch.bool, device=x.device)
        only_this[:, self.column] = True
        embeddings = {m: e.expand(rows, *e.shape[1:]) for m, e in self.embeddings.items()}
        embeddings[self.modality] = self.model.encode({self.modality: x}, only_this)[self.modality]
        logits = self.model.fuse(embeddings, self.present.expand(rows, -1)).logits
        return logits[:, self.output_index : self.output_index + 1]


@dataclass
class FeatureAttributions:
    """Attributions of one modality's variables (or genes) for the explained patients.

    Args:
        modality: modality name.
        method: shap explainer used.
        features: original variable (or gene) names, one per column of ``values``.
        values: ``(n, F)`` attributions in logit space.
        feature_values: ``(n, F)`` object array, each patient's value of each variable.
        base_values: ``(n,)`` the reference each patient's attributions start from (see :data:`SUMS_TO`).
        f_x: ``(n,)`` the explained logit.
        patient_index: ``(n,)`` which patient each row is (cohort index or position).
    """

    modality: str
    method: str
    features: list[str]
    values: np.ndarray
    feature_values: np.ndarray
    base_values: np.ndarray
    f_x: np.ndarray
    patient_index: np.ndarray

    def to_frame(self, top_k: int | None = None) -> pd.DataFrame:
        """Long format ``patient_index, feature, value, attribution``.

        Args:
            top_k: keep only each patient's ``top_k`` largest attributions in absolute value.
        """
        n, n_features = self.values.shape
        order = np.argsort(-np.abs(self.values), axis=1, kind="stable")
        keep = order[:, : top_k or n_features]
        rows = np.repeat(np.arange(n), keep.shape[1])
        cols = keep.ravel()
        return pd.DataFrame(
            {
                "patient_index": self.patient_index[rows],
                "feature": np.asarray(self.features, dtype=object)[cols],
                "value": self.feature_values[rows, cols],
                "attribution": self.values[rows, cols],
            }
        )

    def to_explanation(self) -> shap.Explanation:
        """The attributions as a ``shap.Explanation`` ``(n, F)`` for ``shap.plots.beeswarm/waterfall/bar``.

        ``base_values + values.sum(1)`` is ``f_x`` up to the explainer's accuracy (see :data:`SUMS_TO`);
        ``data`` is numeric (categories NaN, drawn grey), ``display_data`` the raw values.
        """
        return shap.Explanation(
            values=np.asarray(self.values, dtype=float),
            base_values=np.asarray(self.base_values, dtype=float),
            data=numeric_data(self.feature_values),
            display_data=np.asarray(self.feature_values, dtype=object),
            feature_names=list(self.features),
        )

    def summary(self) -> pd.DataFrame:
        """Cohort ranking: ``feature, mean_abs_attribution, mean_attribution``, largest mean |.| first."""
        frame = pd.DataFrame(
            {
                "feature": self.features,
                "mean_abs_attribution": np.abs(self.values).mean(axis=0),
                "mean_attribution": self.values.mean(axis=0),
            }
        )
        return frame.sort_values("mean_abs_attribution", ascending=False, kind="stable").reset_index(drop=True)


def _present_rows(model: nn.Module, modality: str, present: Any) -> tuple[Tensor, np.ndarray]:
    """Presence as a bool tensor, and the rows where ``modality`` is present (the only ones explained)."""
    present = torch.as_tensor(present, dtype=torch.bool)
    column = list(model.modalities).index(modality)
    return present, np.flatnonzero(present[:, column].cpu().numpy())


def _model_reference(model: nn.Module, modality: str) -> Tensor:
    """A tensor of the model whose dtype and device the explained inputs must take."""
    return model.missing[modality] if hasattr(model, "missing") else next(model.parameters())


def _rows_of(embeddings: Mapping[str, Tensor], present: Tensor, p: int) -> tuple[dict[str, Tensor], Tensor]:
    return {m: e[p : p + 1] for m, e in embeddings.items()}, present[p : p + 1]


def _background(background: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    background = np.asarray(background, dtype=np.float32)
    if len(background) <= max_rows:
        return background
    keep = np.random.default_rng(seed).choice(len(background), size=max_rows, replace=False)
    return background[np.sort(keep)]


def _group_columns(feature_groups: Sequence[str]) -> tuple[list[str], list[np.ndarray]]:
    """Original variables in first-appearance order and the preprocessed columns of each."""
    names = list(dict.fromkeys(feature_groups))
    groups = np.asarray(feature_groups, dtype=object)
    return names, [np.flatnonzero(groups == name) for name in names]


def _variable_values(
    x: np.ndarray,
    names: list[str],
    columns: list[np.ndarray],
    raw: pd.DataFrame | None,
    feature_names: Sequence[str] | None,
) -> np.ndarray:
    """Each patient's value of each variable: the raw value when given, else the preprocessed one.

    A variable spread over several columns (one-hot) shows its active column's name.
    """
    out = np.empty((len(x), len(names)), dtype=object)
    for j, (name, cols) in enumerate(zip(names, columns, strict=True)):
        if raw is not None and name in raw.columns:
            out[:, j] = raw[name].to_numpy()
        elif len(cols) == 1:
            out[:, j] = x[:, cols[0]]
        else:
            hot = cols[np.argmax(x[:, cols], axis=1)]
            out[:, j] = [feature_names[c] if feature_names is not None else int(c) for c in hot]
    return out


def _choose(algorithm: Algorithm, n_columns: int) -> str:
    if algorithm != "auto":
        return algorithm
    if n_columns <= 10:
        return "exact"
    return "permutation" if n_columns <= 64 else "partition"


def _rows(embeddings: Mapping[str, Tensor], rows: np.ndarray) -> dict[str, Tensor]:
    index = torch.as_tensor(rows, dtype=torch.long)
    return {m: e[index.to(e.device)] for m, e in embeddings.items()}


def _shap_per_patient(
    model: nn.Module,
    modality: str,
    x: np.ndarray,
    embeddings: Mapping[str, Tensor],
    present: Tensor,
    rows: np.ndarray,
    background: np.ndarray,
    output_index: int,
    method: str,
    evals: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """shap's Partition explainer (Owen values over a correlation clustering), one explainer per patient: the
    one algorithm without a batched equivalent in :mod:`.batched_shap`."""
    reference = _model_reference(model, modality)
    masker = shap.maskers.Partition(background, max_samples=len(background), clustering="correlation")
    raw_phi, base, f_x = np.zeros((len(rows), x.shape[1])), np.zeros(len(rows)), np.zeros(len(rows))
    for r, p in enumerate(rows):
        head = ModalityLogit(model, modality, *_rows_of(embeddings, present, p), output_index)
        f = _numpy_fn(head, reference.dtype, reference.device)
        explanation = shap.explainers.Partition(f, masker)(x[p : p + 1], silent=True, max_evals=evals)
        raw_phi[r] = explanation.values[0]
        base[r] = float(np.ravel(explanation.base_values)[0])
        f_x[r] = f(x[p : p + 1])[0]
    return raw_phi, base, f_x


class _Eval:
    """Put a model in eval mode for a block and restore its mode afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def _numpy_fn(head: ModalityLogit, dtype: torch.dtype, device: torch.device) -> Any:
    def f(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = head(torch.as_tensor(np.asarray(x), dtype=dtype, device=device))
        return out[:, 0].double().cpu().numpy()

    return f


def tabular_attributions(
    model: nn.Module,
    modality: str,
    x: np.ndarray,
    embeddings: Mapping[str, Tensor],
    present: Tensor,
    background: np.ndarray,
    feature_groups: Sequence[str],
    output_index: int = 0,
    algorithm: Algorithm = "auto",
    raw_values: pd.DataFrame | None = None,
    feature_names: Sequence[str] | None = None,
    patient_index: np.ndarray | None = None,
    max_background: int = 50,
    max_evals: int | None = None,
    seed: int = 0,
) -> FeatureAttributions:
    """shap attributions of a tabular modality's variables, per patient, in logit space.

    Args:
        model: a ``MultimodalModel``.
        modality: the tabular modality explained.
        x: ``(n, F)`` preprocessed features of the explained patients (rows where ``modality`` is absent are
            skipped).
        embeddings: cached ``(n, D_m)`` embeddings of the same patients (from ``model.encode``).
        present: ``(n, M)`` bool presence.
        background: ``(b, F)`` preprocessed rows of training patients; at most ``max_background`` are used.
        feature_groups: original variable of each preprocessed column (one-hot columns share one name); the
            attributions of a variable's columns are summed.
        output_index: logit column explained.
        algorithm: ``exact`` (2^F coalitions), ``permutation``, ``partition``, or ``auto`` (exact up to 10
            columns, permutation up to 64, partition beyond).
        raw_values: optional original values (rows aligned with ``x``, columns = variable names), shown in
            the ``value`` column.
        feature_names: optional names of the preprocessed columns (shown as the value of one-hot variables).
        patient_index: labels of the rows (default ``0..n-1``).
        max_background: background rows kept (sampled with ``seed``).
        max_evals: model evaluations per patient for permutation/partition (default ``10 F + 1``, >= 500).
        seed: seeds background sampling and permutations.
    """
    x = np.asarray(x, dtype=np.float32)
    if len(feature_groups) != x.shape[1]:
        raise ValueError(f"feature_groups has {len(feature_groups)} names for {x.shape[1]} columns")
    present, rows = _present_rows(model, modality, present)
    index = np.arange(len(x)) if patient_index is None else np.asarray(patient_index)
    back = _background(background, max_background, seed)
    method = _choose(algorithm, x.shape[1])
    evals = max_evals or max(500, 10 * x.shape[1] + 1)
    reference = _model_reference(model, modality)
    with _Eval(model):
        if method == "partition":
            raw_phi, base, f_x = _shap_per_patient(
                model, modality, x, embeddings, present, rows, back, output_index, method, evals, seed
            )
        else:
            head = PatientsLogit(model, modality, _rows(embeddings, rows), present[rows], output_index)
            x_t = torch.as_tensor(x[rows], dtype=reference.dtype, device=reference.device)
            back_t = torch.as_tensor(back, dtype=reference.dtype, device=reference.device)
            if method == "exact":
                raw_phi, base, f_x = exact_shapley(head, x_t, back_t)
            elif method == "permutation":
                raw_phi, base, f_x = permutation_shapley(head, x_t, back_t, evals, seed)
            else:
                raise ValueError(f"unknown algorithm {method!r}; use auto, exact, permutation or partition")
    names, columns = _group_columns(feature_groups)
    values = np.stack([raw_phi[:, cols].sum(axis=1) for cols in columns], axis=1)
    raw = raw_values.iloc[rows] if raw_values is not None else None
    return FeatureAttributions(
        modality=modality,
        method=method,
        features=names,
        values=values,
        feature_values=_variable_values(x[rows], names, columns, raw, feature_names),
        base_values=base,
        f_x=f_x,
        patient_index=index[rows],
    )


def gene_attributions(
    model: nn.Module,
    modality: str,
    x: np.ndarray | Tensor,
    embeddings: Mapping[str, Tensor],
    present: Tensor,
    background: np.ndarray | Tensor,
    gene_names: Sequence[str],
    output_index: int = 0,
    nsamples: int = 200,
    patient_index: np.ndarray | None = None,
    max_background: int = 100,
    seed: int = 0,
) -> FeatureAttributions:
    """Expected-gradients attributions of each gene (shap.GradientExplainer's estimator, every patient's samples in
    one batched pass), in logit space.

    Args:
        model: a ``MultimodalModel``.
        modality: the genomic modality explained.
        x: ``(n, G)`` preprocessed genomic inputs of the explained patients (rows where absent are skipped).
        embeddings: cached ``(n, D_m)`` embeddings of the same patients.
        present: ``(n, M)`` bool presence.
        background: ``(b, G)`` preprocessed rows of training patients (at most ``max_background`` used).
        gene_names: one name per column.
        output_index: logit column explained.
        nsamples: gradient samples per patient (more: smaller sampling error).
        patient_index: labels of the rows (default ``0..n-1``).
        max_background: background rows kept (sampled with ``seed``).
        seed: seeds background sampling and the explainer's sampling.
    """
    present, rows = _present_rows(model, modality, present)
    index = np.arange(len(x)) if patient_index is None else np.asarray(patient_index)
    reference = _model_reference(model, modality)
    x_t = torch.as_tensor(np.asarray(x), dtype=reference.dtype, device=reference.device)
    back = torch.as_tensor(_background(np.asarray(background), max_background, seed), device=reference.device)
    back = back.to(reference.dtype)
    with _Eval(model):
        head = PatientsLogit(model, modality, _rows(embeddings, rows), present[rows], output_index)
        values, base, f_x = expected_gradients(head, x_t[rows], back, nsamples, seed)
    return FeatureAttributions(
        modality=modality,
        method="gradient",
        features=[str(g) for g in gene_names],
        values=values,
        feature_values=x_t[rows].cpu().numpy().astype(object),
        base_values=base,
        f_x=f_x,
        patient_index=index[rows],
    )
