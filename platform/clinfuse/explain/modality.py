"""Exact Shapley values of modalities: how much each modality moved one patient's logit.

The game: the players are the modalities a patient actually has; the value of a coalition ``S`` is the
model's logit when only ``S`` is present, every other modality taking the model's own missing-modality path
(its learned missing embedding). With ``M`` modalities there are only ``2^M`` coalitions, so the values are
exact, not sampled. They are computed on cached embeddings: encoders run once per patient, then ``fuse`` runs
on every (patient, coalition) row in large batches. A modality the patient lacks is never a player (its value
is 0 and it stays absent in every coalition), so for each patient ``sum(phi) = f_x - f_empty`` exactly, where
``f_x`` is the logit with all of the patient's modalities and ``f_empty`` the logit with none.

Coalitions are integer bitmasks: bit ``m`` set means ``modalities[m]`` is in the coalition.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from clinfuse.explain.coalitions import bits, interaction_operator, pattern_ints, shapley_operator

FuseFn = Callable[[dict[str, Tensor], Tensor], Tensor]

MAX_MODALITIES = 12  # 2^12 coalitions per patient is already 4096 fuse rows each


@dataclass
class ModalityShapley:
    """Per-patient modality Shapley values in logit space.

    Args:
        modalities: modality names, in presence-column order.
        phi: ``(n, M)`` float64 Shapley value of each modality (0 where the modality is absent).
        f_x: ``(n,)`` logit with all of the patient's modalities present.
        f_empty: ``(n,)`` logit with no modality present (every modality on its missing path).
        present: ``(n, M)`` bool, which modalities each patient has.
        output_index: ``(n,)`` which logit column was explained for each patient.
        coalition_values: ``(n, 2^M)`` logit of every coalition (column = bitmask, intersected with
            ``present``).
        gates: ``(n, M)`` the fusion's mixing weights on the full input, or ``None`` if it has none. Gates say
            how embeddings were mixed, not how much each modality contributed: use ``phi`` for contributions.
        index: ``(n,)`` cohort indices of the patients, when known.
    """

    modalities: list[str]
    phi: np.ndarray
    f_x: np.ndarray
    f_empty: np.ndarray
    present: np.ndarray
    output_index: np.ndarray
    coalition_values: np.ndarray
    gates: np.ndarray | None = None
    index: np.ndarray | None = None

    def to_frame(
        self,
        patients: list[str] | None = None,
        labels: np.ndarray | None = None,
        probs: np.ndarray | None = None,
        class_names: list[str] | None = None,
    ) -> pd.DataFrame:
        """Rows in the ``contributions.csv`` layout (see docs/architecture.md).

        Args:
            patients: pseudonymous ids, one per row; adds the ``patient`` column.
            labels: true labels; adds the ``label`` column.
            probs: predicted probability (or risk); adds the ``prob`` column.
            class_names: for multiclass models, adds ``explained_class`` (the class whose logit was
                explained).
        """
        columns: dict[str, Any] = {}
        if patients is not None:
            columns["patient"] = list(patients)
        if labels is not None:
            columns["label"] = np.asarray(labels)
        if probs is not None:
            columns["prob"] = np.asarray(probs)
        columns["f_x"] = self.f_x
        columns["f_empty"] = self.f_empty
        for m, name in enumerate(self.modalities):
            columns[f"phi_{name}"] = self.phi[:, m]
        for m, name in enumerate(self.modalities):
            columns[f"gate_{name}"] = self.gates[:, m] if self.gates is not None else np.nan
        for m, name in enumerate(self.modalities):
            columns[f"present_{name}"] = self.present[:, m]
        if class_names is not None and len(class_names) > 2:
            columns["explained_class"] = [class_names[int(k)] for k in self.output_index]
        frame = pd.DataFrame(columns)
        if self.index is not None:
            frame.index = pd.Index(self.index, name="index")
        return frame


@dataclass
class ModalityInteractions:
    """Pairwise Shapley interaction values (the SHAP convention of Lundberg et al. 2020).

    ``values[p, i, j]`` (i != j) is half of modality i and j's joint effect beyond their separate effects, so
    the full pair interaction is ``values[p, i, j] + values[p, j, i]``; the diagonal holds the main effects,
    and each row sums to ``phi[p, i]`` (the whole matrix to ``f_x - f_empty``).

    Args:
        modalities: modality names.
        values: ``(n, M, M)`` float64.
        mean: ``(M, M)`` cohort mean of ``values``.
    """

    modalities: list[str]
    values: np.ndarray
    mean: np.ndarray


def _evaluate_coalitions(
    fuse: FuseFn, embeddings: Mapping[str, Tensor], present: np.ndarray, batch_size: int
) -> np.ndarray:
    """Logits ``(n, 2^M, K)`` float64 of every coalition intersected with each patient's presence.

    Only coalitions inside a patient's presence are run through ``fuse`` (the others repeat one of them).
    """
    n, n_modalities = present.shape
    patterns = pattern_ints(present)
    masks = np.arange(2**n_modalities)
    patient_rows, coalition_rows = [], []
    for pattern in np.unique(patterns):
        members = np.flatnonzero(patterns == pattern)
        subsets = masks[(masks & ~pattern) == 0]
        patient_rows.append(np.repeat(members, len(subsets)))
        coalition_rows.append(np.tile(subsets, len(members)))
    rows_patient = np.concatenate(patient_rows)
    rows_coalition = np.concatenate(coalition_rows)

    device = next(iter(embeddings.values())).device
    coalition_bits = torch.as_tensor(bits(n_modalities), device=device)
    present_t = torch.as_tensor(present, device=device)
    outputs = []
    with torch.no_grad():
        for start in range(0, len(rows_patient), batch_size):
            who = torch.as_tensor(rows_patient[start : start + batch_size], device=device)
            which = torch.as_tensor(rows_coalition[start : start + batch_size], device=device)
            chunk = {name: emb.index_select(0, who) for name, emb in embeddings.items()}
            logits = fuse(chunk, present_t[who] & coalition_bits[which])
            outputs.append(logits.detach().to("cpu", torch.float64).reshape(len(who), -1))
    logits = torch.cat(outputs).numpy()

    values = np.full((n, 2**n_modalities, logits.shape[1]), np.nan)
    values[rows_patient, rows_coalition] = logits
    # A coalition reaching outside the patient's presence plays exactly as its intersection with it.
    return values[np.arange(n)[:, None], masks[None, :] & patterns[:, None]]


def modality_shapley(
    fuse: FuseFn,
    embeddings: Mapping[str, Tensor],
    present: Tensor | np.ndarray,
    modalities: list[str],
    output_index: int | Literal["predicted"] = 0,
    batch_size: int = 65536,
) -> ModalityShapley:
    """Exact per-patient Shapley values of the modalities, in logit space.

    Args:
        fuse: ``fuse(embeddings, present) -> logits (B, K)``; must substitute its missing-modality path
            wherever ``present`` is False (e.g. ``lambda e, p: model.fuse(e, p).logits``).
        embeddings: cached ``(n, D_m)`` embedding per modality (rows of absent modalities are never used).
        present: ``(n, M)`` bool presence, columns in ``modalities`` order.
        modalities: modality names, in presence-column order.
        output_index: logit column to explain, or ``"predicted"`` for each patient's predicted class (argmax
            of the full-input logits; use only for multiclass models).
        batch_size: (patient, coalition) rows per ``fuse`` call.

    Returns:
        The Shapley values with ``f_x``, ``f_empty`` and every coalition's logit;
        ``phi.sum(1) == f_x - f_empty`` (combined in float64). A float32 ``fuse`` leaves float32 rounding
        (~1e-7 relative) in each coalition's logit; :func:`model_modality_shapley` fuses in float64.
    """
    present_np = np.asarray(present.cpu() if isinstance(present, Tensor) else present, dtype=bool)
    n_modalities = len(modalities)
    if present_np.ndim != 2 or present_np.shape[1] != n_modalities:
        raise ValueError(f"present must be (n_patients, {n_modalities}), got shape {present_np.shape}")
    if n_modalities > MAX_MODALITIES:
        raise ValueError(f"exact Shapley over {n_modalities} modalities needs 2^{n_modalities} coalitions")
    missing = [m for m in modalities if m not in embeddings]
    if missing:
        raise ValueError(f"embeddings lack modalities {missing}")
    n = present_np.shape[0]
    if n == 0:
        raise ValueError("no patients to explain: present has no rows")

    values_all = _evaluate_coalitions(fuse, embeddings, present_np, batch_size)
    patterns = pattern_ints(present_np)
    if output_index == "predicted":
        chosen = values_all[np.arange(n), patterns].argmax(axis=1)
    else:
        chosen = np.full(n, int(output_index))
    values = values_all[np.arange(n), :, chosen]

    phi = np.zeros((n, n_modalities))
    for pattern in np.unique(patterns):
        members = patterns == pattern
        phi[members] = values[members] @ shapley_operator(int(pattern), n_modalities)
    return ModalityShapley(
        modalities=list(modalities),
        phi=phi,
        f_x=values[np.arange(n), patterns],
        f_empty=values[:, 0],
        present=present_np,
        output_index=chosen,
        coalition_values=values,
    )


def shapley_interactions(result: ModalityShapley) -> ModalityInteractions:
    """Pairwise Shapley interaction values per patient and their cohort mean, from stored coalition values.

    Args:
        result: output of :func:`modality_shapley` (no model calls are needed).
    """
    n, n_modalities = result.present.shape
    patterns = pattern_ints(result.present)
    values = np.zeros((n, n_modalities, n_modalities))
    for pattern in np.unique(patterns):
        members = patterns == pattern
        values[members] = np.einsum(
            "ps,sij->pij", result.coalition_values[members], interaction_operator(int(pattern), n_modalities)
        )
    diagonal = result.phi - values.sum(axis=2)
    values[:, np.arange(n_modalities), np.arange(n_modalities)] = diagonal
    mean = values.mean(axis=0) if n else np.zeros((n_modalities, n_modalities))
    return ModalityInteractions(modalities=list(result.modalities), values=values, mean=mean)


def _group_stats(phi: np.ndarray, present: np.ndarray, modalities: list[str]) -> dict[str, Any]:
    """Means of one group of patients; ``None`` (JSON null) where a mean has no patients."""
    n = len(phi)
    mean_phi = phi.mean(axis=0) if n else np.zeros(len(modalities))
    abs_mean = np.abs(phi).mean(axis=0) if n else np.zeros(len(modalities))
    total = abs_mean.sum()
    n_present = present.sum(axis=0)
    abs_sum = np.abs(phi).sum(axis=0)
    return {
        "n": int(n),
        "mean_phi": {m: float(v) for m, v in zip(modalities, mean_phi, strict=True)},
        "mean_abs_phi": {m: float(v) for m, v in zip(modalities, abs_mean, strict=True)},
        "share": {m: float(v / total) if total > 0 else 0.0 for m, v in zip(modalities, abs_mean, strict=True)},
        "mean_abs_phi_when_present": {
            m: float(s / c) if c else None for m, s, c in zip(modalities, abs_sum, n_present, strict=True)
        },
        "n_present": {m: int(c) for m, c in zip(modalities, n_present, strict=True)},
    }


def cohort_summary(
    result: ModalityShapley,
    labels: np.ndarray | None = None,
    predictions: np.ndarray | None = None,
    class_names: list[str] | None = None,
) -> dict[str, Any]:
    """Cohort-level modality contributions, JSON-ready (``modality_summary.json``).

    Means run over all patients, an absent modality counting as 0 (so ``share`` is each modality's part of the
    total mean ``|phi|``); ``mean_abs_phi_when_present`` averages over the patients who have it.

    Args:
        result: per-patient Shapley values.
        labels: ``(n,)`` true class indices; adds ``by_true_class``.
        predictions: ``(n,)`` predicted class indices; adds ``by_predicted_class``.
        class_names: class names in index order (defaults to the index as text).
    """
    modalities = result.modalities
    summary: dict[str, Any] = {
        "modalities": modalities,
        "n_patients": int(len(result.phi)),
        "n_present": {m: int(v) for m, v in zip(modalities, result.present.sum(axis=0), strict=True)},
        "mean_f_x": float(result.f_x.mean()) if len(result.f_x) else None,
        "mean_f_empty": float(result.f_empty.mean()) if len(result.f_empty) else None,
        "overall": _group_stats(result.phi, result.present, modalities),
    }
    for key, groups in (("by_true_class", labels), ("by_predicted_class", predictions)):
        if groups is None:
            continue
        groups = np.asarray(groups)
        per_class = {}
        classes = range(len(class_names)) if class_names is not None else np.unique(groups)
        for k in classes:
            name = class_names[int(k)] if class_names is not None else str(k)
            rows = groups == k
            per_class[name] = _group_stats(result.phi[rows], result.present[rows], modalities)
        summary[key] = per_class
    summary["interactions"] = {"modalities": modalities, "mean": shapley_interactions(result).mean.tolist()}
    return summary


def _batches(data: Any) -> Iterable[Mapping[str, Any]]:
    """A batch dict ``{modality: tensor, "present": (B, M)}``, an ``(inputs, present)`` pair, or a loader."""
    if isinstance(data, Mapping):
        return [data]
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Mapping):
        return [{**data[0], "present": data[1]}]
    return data


def model_modality_shapley(
    model: nn.Module,
    data: Any,
    output_index: int | Literal["predicted"] = 0,
    batch_size: int = 65536,
    float64: bool = True,
) -> ModalityShapley:
    """Encode every patient once, then compute exact modality Shapley values with ``model.fuse``.

    Args:
        model: a ``MultimodalModel`` (``modalities``, ``encode``, ``fuse`` returning ``FusionOutput``).
        data: a batch dict ``{modality: input, "present": (B, M)[, "index": (B,)]}``, an ``(inputs, present)``
            pair, or an iterable of batch dicts (e.g. a DataLoader of ``PatientDataset``).
        output_index: logit column to explain, or ``"predicted"`` (multiclass).
        batch_size: (patient, coalition) rows per ``fuse`` call.
        float64: run ``fuse`` on a float64 copy of the model. float32 kernels may round the same row
            differently depending on its batch position, which would give a modality the model ignores a phi
            of ~1e-8 instead of 0; in float64 that noise is ~1e-16.
    """
    modalities = list(model.modalities)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    embeddings: dict[str, list[Tensor]] = {m: [] for m in modalities}
    presents, gates, indices = [], [], []
    try:
        with torch.no_grad():
            for batch in _batches(data):
                present = torch.as_tensor(batch["present"], dtype=torch.bool, device=device)
                inputs = {m: batch[m].to(device) for m in modalities if m in batch}
                encoded = model.encode(inputs, present)
                for m in modalities:
                    embeddings[m].append(encoded[m])
                presents.append(present)
                batch_gates = model.fuse(encoded, present).gates
                if batch_gates is not None:
                    gates.append(batch_gates.cpu().double())
                if "index" in batch:
                    indices.append(np.asarray(batch["index"]))
        cached = {m: torch.cat(e) for m, e in embeddings.items()}
        fuser = model
        if float64:
            fuser = copy.deepcopy(model).double()
            cached = {m: e.double() for m, e in cached.items()}
        result = modality_shapley(
            lambda e, p: fuser.fuse(e, p).logits,
            cached,
            torch.cat(presents),
            modalities,
            output_index=output_index,
            batch_size=batch_size,
        )
    finally:
        model.train(was_training)
    result.gates = torch.cat(gates).numpy() if gates else None
    result.index = np.concatenate(indices) if indices else None
    return result


def explain_model_modalities(
    model: nn.Module,
    data: Any,
    output_index: int | Literal["predicted"] = 0,
    batch_size: int = 65536,
    patients: list[str] | None = None,
    labels: np.ndarray | None = None,
    probs: np.ndarray | None = None,
    class_names: list[str] | None = None,
) -> pd.DataFrame:
    """Modality contributions as a ``contributions.csv`` frame (see :func:`model_modality_shapley`).

    ``gate_<modality>`` columns are the fusion's mixing weights (NaN for models without gates), not
    contributions. ``patient``/``label``/``prob`` columns are added when given.
    """
    result = model_modality_shapley(model, data, output_index=output_index, batch_size=batch_size)
    return result.to_frame(patients=patients, labels=labels, probs=probs, class_names=class_names)
