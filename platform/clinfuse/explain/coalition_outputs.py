"""Every output column of a model for every coalition of modalities: the raw material of loss-based games.

:func:`modality_shapley` explains one logit column per patient; a loss needs them all (a multiclass
cross-entropy reads every class logit). The coalitions are the same: bitmask ``s`` intersected with each
patient's presence, absent modalities on the model's missing path, evaluated on cached embeddings with
``_evaluate_coalitions``. A fold ensemble's outputs are its members' mean logits, per coalition.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from clinfuse.explain.modality import MAX_MODALITIES, FuseFn, _batches, _evaluate_coalitions


@dataclass
class CoalitionOutputs:
    """Every output column of a model for every coalition of modalities, per patient.

    An ensemble's outputs are the mean of its members' (see :func:`average_coalition_outputs`); SAGE of the
    ensemble must be computed from those means, not by averaging members' SAGE values (the loss is not linear).

    Args:
        modalities: modality names, in presence-column order.
        logits: ``(n, 2^M, K)`` float64 outputs; column ``s`` is the coalition with bitmask ``s`` intersected
            with the patient's presence.
        present: ``(n, M)`` bool, which modalities each patient has.
        index: ``(n,)`` cohort indices of the patients, when known.
    """

    modalities: list[str]
    logits: np.ndarray
    present: np.ndarray
    index: np.ndarray | None = None


def coalition_outputs(
    fuse: FuseFn,
    embeddings: Mapping[str, Tensor],
    present: Tensor | np.ndarray,
    modalities: Sequence[str],
    *,
    batch_size: int = 65536,
) -> CoalitionOutputs:
    """All output columns of every coalition, from cached embeddings (the game of :func:`modality_shapley`).

    Args:
        fuse: ``fuse(embeddings, present) -> logits (B, K)``, substituting its missing path where ``present`` is
            False.
        embeddings: cached ``(n, D_m)`` embedding per modality.
        present: ``(n, M)`` bool presence, columns in ``modalities`` order.
        modalities: modality names.
        batch_size: (patient, coalition) rows per ``fuse`` call.
    """
    present_np = np.asarray(present.cpu() if isinstance(present, Tensor) else present, dtype=bool)
    n_modalities = len(modalities)
    if present_np.ndim != 2 or present_np.shape[1] != n_modalities or present_np.shape[0] == 0:
        raise ValueError(f"present must be (n_patients > 0, {n_modalities}), got shape {present_np.shape}")
    if n_modalities > MAX_MODALITIES:
        raise ValueError(f"{n_modalities} modalities need 2^{n_modalities} coalitions; at most {MAX_MODALITIES} fit")
    missing = [m for m in modalities if m not in embeddings]
    if missing:
        raise ValueError(f"embeddings lack modalities {missing}")
    logits = _evaluate_coalitions(fuse, embeddings, present_np, batch_size)
    return CoalitionOutputs(modalities=list(modalities), logits=logits, present=present_np)


def model_coalition_outputs(
    model: nn.Module, data: Any, *, batch_size: int = 65536, float64: bool = True
) -> CoalitionOutputs:
    """Encode every patient once, then run ``model.fuse`` on every coalition (all output columns).

    Args:
        model: a ``MultimodalModel`` (``modalities``, ``encode``, ``fuse`` returning ``FusionOutput``).
        data: a batch dict ``{modality: input, "present": (B, M)[, "index": (B,)]}``, an ``(inputs, present)``
            pair, or an iterable of batch dicts (e.g. a DataLoader of ``PatientDataset``).
        batch_size: (patient, coalition) rows per ``fuse`` call.
        float64: fuse on a float64 copy of the model, so batch-position rounding of float32 kernels does not
            leak into coalition outputs (see :func:`model_modality_shapley`).
    """
    modalities = list(model.modalities)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    embeddings: dict[str, list[Tensor]] = {m: [] for m in modalities}
    presents, indices = [], []
    try:
        with torch.no_grad():
            for batch in _batches(data):
                present = torch.as_tensor(batch["present"], dtype=torch.bool, device=device)
                encoded = model.encode({m: batch[m].to(device) for m in modalities if m in batch}, present)
                for m in modalities:
                    embeddings[m].append(encoded[m])
                presents.append(present)
                if "index" in batch:
                    indices.append(np.asarray(batch["index"]))
        cached = {m: torch.cat(e) for m, e in embeddings.items()}
        fuser = model
        if float64:
            fuser = copy.deepcopy(model).double()
            cached = {m: e.double() for m, e in cached.items()}
        outputs = coalition_outputs(
            lambda e, p: fuser.fuse(e, p).logits, cached, torch.cat(presents), modalities, batch_size=batch_size
        )
    finally:
        model.train(was_training)
    outputs.index = np.concatenate(indices) if indices else None
    return outputs


def average_coalition_outputs(outputs: Sequence[CoalitionOutputs]) -> CoalitionOutputs:
    """The fold ensemble's coalition outputs: the mean logit of its members, per patient and coalition.

    Args:
        outputs: one per fold model, on the same patients in the same order.
    """
    if not outputs:
        raise ValueError("no coalition outputs to average")
    first = outputs[0]
    for other in outputs[1:]:
        if other.modalities != first.modalities or other.logits.shape != first.logits.shape:
            raise ValueError("coalition outputs to average must share modalities and shape (n, 2^M, K)")
        if not np.array_equal(other.present, first.present) or (
            first.index is not None and other.index is not None and not np.array_equal(other.index, first.index)
        ):
            raise ValueError("coalition outputs to average must hold the same patients in the same order")
    mean = np.mean([o.logits for o in outputs], axis=0)
    return CoalitionOutputs(list(first.modalities), mean, first.present.copy(), first.index)
