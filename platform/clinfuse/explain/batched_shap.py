"""Shapley values of a modality's input columns for many patients in one batched pass (no per-patient explainer).

The game is shap's with an independent masker: ``v_p(S) = mean_b f_p(x_p on S, background row b elsewhere)``,
where ``f_p`` is patient ``p``'s logit with its other modalities held at their embeddings. shap builds one
explainer per patient and evaluates a few hundred coalitions in small calls (and compiles its numba masker on the
first call of each process, ~1 min on a loaded 2-core machine); here every coalition of every patient is one row
of a few large forward passes of :class:`PatientsLogit`.

- :func:`exact_shapley`: all ``2^F`` coalitions and the Shapley operator: the values shap's ``Exact`` gives.
- :func:`permutation_shapley`: shap ``Permutation``'s estimator: antithetic pairs of random column orders, each
  order's marginal contributions averaged. Each order's contributions add up to ``v(all) - v(empty)`` exactly, so
  efficiency holds for any number of orders, and a column the model ignores gets exactly 0.
- :func:`expected_gradients`: shap ``GradientExplainer``'s estimator, every patient's samples in one backward.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from clinfuse.explain.coalitions import bits, shapley_operator

# Rows per forward pass: large enough to amortise Python overhead, small enough that the masked inputs and the
# encoder's activations stay a few hundred MB.
_CHUNK_ROWS = 1 << 16


class PatientsLogit(nn.Module):
    """Many patients' logits as a function of one modality's input; row ``r`` belongs to patient ``owner[r]``.

    Args:
        model: a ``MultimodalModel`` (``modalities``, ``encode``, ``fuse``).
        modality: the modality whose input varies.
        embeddings: the patients' embeddings, ``(n, D_m)`` per modality.
        present: ``(n, M)`` bool presence of the same patients (``modality`` present).
        output_index: logit column returned.
    """

    def __init__(
        self, model: nn.Module, modality: str, embeddings: Mapping[str, Tensor], present: Tensor, output_index: int
    ) -> None:
        super().__init__()
        self.model, self.modality, self.output_index = model, modality, output_index
        self.column = list(model.modalities).index(modality)
        self.embeddings = {m: e.detach() for m, e in embeddings.items()}
        self.present = present.bool()

    def forward(self, x: Tensor, owner: Tensor) -> Tensor:
        """``(R, *input)`` inputs and ``(R,)`` patient positions → ``(R,)`` logits."""
        only_this = torch.zeros(len(x), self.present.shape[1], dtype=torch.bool, device=x.device)
        only_this[:, self.column] = True
        embeddings = {m: e[owner] for m, e in self.embeddings.items()}
        embeddings[self.modality] = self.model.encode({self.modality: x}, only_this)[self.modality]
        return self.model.fuse(embeddings, self.present[owner]).logits[:, self.output_index]


def _coalition_values(
    head: PatientsLogit, x: Tensor, background: Tensor, masks: np.ndarray, patients_per_chunk: int
) -> np.ndarray:
    """``v_p(S)`` for every patient and every mask row: ``(n, len(masks))`` float64.

    Args:
        x: ``(n, F)`` the patients' inputs.
        background: ``(b, F)`` background rows.
        masks: ``(C, F)`` bool, True where the patient's own value is kept.
    """
    n, b = len(x), len(background)
    keep = torch.as_tensor(masks, device=x.device)[None, :, None, :]  # (1, C, 1, F)
    out = np.empty((n, len(masks)))
    with torch.no_grad():
        for start in range(0, n, patients_per_chunk):
            part = x[start : start + patients_per_chunk]
            rows = torch.where(keep, part[:, None, None, :], background[None, None, :, :])  # (p, C, b, F)
            owner = torch.arange(start, start + len(part), device=x.device).repeat_interleave(len(masks) * b)
            logits = head(rows.reshape(-1, x.shape[1]), owner)
            out[start : start + len(part)] = logits.reshape(len(part), len(masks), b).double().mean(2).cpu().numpy()
    return out


def _per_chunk(rows_per_patient: int) -> int:
    return max(1, _CHUNK_ROWS // max(rows_per_patient, 1))


def exact_shapley(head: PatientsLogit, x: Tensor, background: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact Shapley values over all ``2^F`` coalitions of the ``F`` columns (use for ``F`` up to ~12).

    Returns:
        ``(n, F)`` values, ``(n,)`` base values ``v(empty)`` and ``(n,)`` ``v(all) = f(x)``.
    """
    n_columns = x.shape[1]
    masks = bits(n_columns)
    values = _coalition_values(head, x, background, masks, _per_chunk(len(masks) * len(background)))
    phi = values @ shapley_operator(2**n_columns - 1, n_columns)
    return phi, values[:, 0], values[:, -1]


def permutation_shapley(
    head: PatientsLogit, x: Tensor, background: Tensor, max_evals: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shapley values estimated from ``max_evals // (2F + 1)`` antithetic pairs of column orders (at least one).

    The orders are drawn once with ``seed`` and shared by every patient (each patient's estimate is unbiased
    either way, and one set of masks serves the whole batch).

    Returns:
        ``(n, F)`` values, ``(n,)`` base values ``v(empty)`` and ``(n,)`` ``v(all) = f(x)``.
    """
    n_columns = x.shape[1]
    rng = np.random.default_rng(seed)
    pairs = max(1, max_evals // (2 * n_columns + 1))
    orders = [o for o in (rng.permutation(n_columns) for _ in range(pairs)) for o in (o, o[::-1])]
    # Masks along each order: step k holds the first k columns of the order (k = 0..F).
    masks = np.zeros((len(orders), n_columns + 1, n_columns), dtype=bool)
    for i, order in enumerate(orders):
        for k in range(1, n_columns + 1):
            masks[i, k, order[:k]] = True
    # Every order starts at the empty set and ends at the full one: evaluate those once.
    inner = masks[:, 1:-1].reshape(-1, n_columns)
    unique = np.concatenate([np.zeros((1, n_columns), bool), inner, np.ones((1, n_columns), bool)])
    values = _coalition_values(head, x, background, unique, _per_chunk(len(unique) * len(background)))
    path = np.concatenate(
        [
            np.repeat(values[:, :1, None], len(orders), axis=1),
            values[:, 1:-1].reshape(len(x), len(orders), n_columns - 1),
            np.repeat(values[:, -1:, None], len(orders), axis=1),
        ],
        axis=2,
    )  # (n, orders, F + 1)
    steps = np.diff(path, axis=2)  # step k adds column order[k]
    phi = np.zeros((len(x), n_columns))
    for i, order in enumerate(orders):
        phi[:, order] += steps[:, i]
    return phi / len(orders), values[:, 0], values[:, -1]


def expected_gradients(
    head: PatientsLogit, x: Tensor, background: Tensor, nsamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected gradients (shap ``GradientExplainer``): ``mean_k grad f(b_k + t_k (x - b_k)) * (x - b_k)`` over
    ``nsamples`` random background rows ``b_k`` and ``t_k ~ U(0, 1)`` per patient.

    Returns:
        ``(n, F)`` values, ``(n,)`` base values ``mean_b f(b)`` and ``(n,)`` ``f(x)``.
    """
    n, b = len(x), len(background)
    generator = torch.Generator().manual_seed(seed)
    phi = np.empty((n, x.shape[1]))
    base, f_x = np.empty(n), np.empty(n)
    per_chunk = _per_chunk(nsamples)
    for start in range(0, n, per_chunk):
        part = x[start : start + per_chunk]
        owner = torch.arange(start, start + len(part), device=x.device).repeat_interleave(nsamples)
        pick = torch.randint(b, (len(part) * nsamples,), generator=generator).to(x.device)
        t = torch.rand(len(part) * nsamples, 1, generator=generator).to(device=x.device, dtype=x.dtype)
        delta = part.repeat_interleave(nsamples, dim=0) - background[pick]
        points = (background[pick] + t * delta).requires_grad_(True)
        (grad,) = torch.autograd.grad(head(points, owner).sum(), points)
        phi[start : start + len(part)] = (grad * delta).reshape(len(part), nsamples, -1).double().mean(1).cpu().numpy()
        with torch.no_grad():
            back_owner = torch.arange(start, start + len(part), device=x.device).repeat_interleave(b)
            back = head(background.repeat(len(part), 1), back_owner).reshape(len(part), b).double().mean(1)
            base[start : start + len(part)] = back.cpu().numpy()
            f_x[start : start + len(part)] = head(part, owner[::nsamples]).double().cpu().numpy()
    return phi, base, f_x
