"""Reference modality Shapley values from ``shap.explainers.Exact``, to cross-check :mod:`.modality`.

shap sees the modality game as a model of a binary mask: ``f(mask rows) -> logits`` for one patient, with a
masker whose background is the all-zeros mask (every modality on the model's missing path). This per-patient
loop is slow by design; it exists to verify the batched computation and for the benchmark, not for production.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import shap
import torch
from torch import Tensor

MaskGame = Callable[[Tensor], Tensor]


def _patient_game(
    fuse: Callable[[dict[str, Tensor], Tensor], Tensor],
    embeddings: Mapping[str, Tensor],
    present: Tensor,
    patient: int,
    output_index: int,
) -> Callable[[np.ndarray], np.ndarray]:
    """``f(masks (k, M)) -> (k,)`` logits of one patient with ``present & mask``."""

    def game(masks: np.ndarray) -> np.ndarray:
        mask = torch.as_tensor(np.asarray(masks) > 0.5, device=present.device)
        rows = mask.shape[0]
        chunk = {m: e[patient : patient + 1].expand(rows, *e.shape[1:]) for m, e in embeddings.items()}
        with torch.no_grad():
            logits = fuse(chunk, present[patient : patient + 1] & mask)
        return logits[:, output_index].double().cpu().numpy()

    return game


def shap_modality_values(
    fuse: Callable[[dict[str, Tensor], Tensor], Tensor],
    embeddings: Mapping[str, Tensor],
    present: Tensor,
    modalities: list[str],
    output_index: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Modality Shapley values per patient computed by ``shap.explainers.Exact`` on the mask game.

    Args:
        fuse: ``fuse(embeddings, present) -> logits (B, K)`` with the model's missing-modality path.
        embeddings: cached ``(n, D_m)`` embeddings per modality.
        present: ``(n, M)`` bool presence in ``modalities`` order.
        modalities: modality names.
        output_index: logit column to explain.

    Returns:
        ``phi (n, M)`` and shap's base values ``(n,)`` (the all-missing logit ``f_empty``).
    """
    present = torch.as_tensor(present, dtype=torch.bool)
    n_modalities = len(modalities)
    masker = shap.maskers.Independent(np.zeros((1, n_modalities)))
    phi = np.zeros((present.shape[0], n_modalities))
    base = np.zeros(present.shape[0])
    ones = np.ones((1, n_modalities))
    for patient in range(present.shape[0]):
        game = _patient_game(fuse, embeddings, present, patient, output_index)
        explanation = shap.explainers.Exact(game, masker)(ones, silent=True)
        phi[patient] = explanation.values[0]
        base[patient] = float(np.ravel(explanation.base_values)[0])
    return phi, base
