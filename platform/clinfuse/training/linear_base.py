"""Fit a deep model's linear base: the penalised regression of its fold, read into the model's linear terms.

The fit is the classical linear baseline's (:func:`~clinfuse.training.estimators.make_estimator`: logistic
regression, or elastic-net Cox for survival, penalty by inner cross-validation) on the fold's training patients
only, on the features the model's linear terms read (:func:`~clinfuse.fusion.linear_base.linear_features`), with
an absent modality at its training means. The fitted estimator is affine in its features whatever its internals
(a scaler then a linear model, a penalty path read at one penalty), so its coefficients are read off by
evaluating it at the origin and at each unit vector, and checked against its own predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from clinfuse.cohort import Cohort
from clinfuse.errors import ClinfuseError
from clinfuse.fusion import MultimodalModel
from clinfuse.fusion.linear_base import linear_features
from clinfuse.training.data import FoldInputs
from clinfuse.training.estimators import estimator_target, fit_estimator, logits, make_estimator

# Patients whose inputs are summarised at once (bounds the memory a fold of large volumes takes).
_CHUNK = 256
# Unit vectors evaluated at once when reading the coefficients.
_PROBE_CHUNK = 1024


@dataclass
class LinearFit:
    """A penalised linear fit in the model's terms: ``bias + sum_m weights[m] @ (phi_m - centers[m])``.

    Args:
        weights: ``(n_outputs, F_m)`` per modality.
        centers: ``(F_m,)`` training means per modality.
        bias: ``(n_outputs,)``.
    """

    weights: dict[str, np.ndarray]
    centers: dict[str, np.ndarray]
    bias: np.ndarray


def linear_fit(
    cohort: Cohort, modalities: list[str], inputs: FoldInputs, train: np.ndarray, n_outputs: int, seed: int
) -> LinearFit:
    """The penalised linear fit of a fold on its training patients ``train`` (cohort indices).

    Args:
        cohort: the cohort (labels, times, presence).
        modalities: the model's modalities, in model order.
        inputs: the fold's fitted inputs.
        train: the fold's training patients; no other patient reaches the fit.
        n_outputs: logits per patient.
        seed: seeds the inner cross-validation's folds.
    """
    blocks, centers = {}, {}
    for name in modalities:
        present = cohort.modalities[name].present[train]
        features = _features(inputs, name, train[present], int(train[0]))
        # A modality no training patient has gets a zero term (constant columns take no coefficient).
        center = features.mean(axis=0) if len(features) else np.zeros(features.shape[1])
        block = np.repeat(center[None, :], len(train), axis=0)
        block[present] = features
        blocks[name], centers[name] = block, center
    x = np.concatenate([blocks[name] for name in modalities], axis=1)
    task = cohort.task
    y = cohort.y[train]
    time = None if cohort.time is None else cohort.time[train]
    regression = "cox_regression" if task == "survival" else "logistic_regression"
    try:
        estimator = make_estimator(regression, task, seed, y, x.shape[1])
        estimator = fit_estimator(estimator, x, estimator_target(task, y, time), train)
    except (ClinfuseError, ValueError, ArithmeticError) as exc:
        reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ClinfuseError(
            f"the linear base ({regression}) cannot be fitted on a fold's {len(train)} training patients x "
            f"{x.shape[1]} features ({reason}); set fusion.linear_base: false to train the networks alone"
        ) from exc
    coefficients, intercept = _affine_map(estimator, x, n_outputs)
    weights, start = {}, 0
    for name in modalities:
        width = blocks[name].shape[1]
        weights[name] = coefficients[:, start : start + width]
        start += width
    bias = intercept + sum(weights[name] @ centers[name] for name in modalities)
    return LinearFit(weights, centers, bias)


def set_linear_base(model: MultimodalModel, fit: LinearFit) -> None:
    """Write a fit into the model's linear terms and bias (the networks and their scale are left as they are)."""
    if model.linear_terms is None:
        raise ValueError("the model has no linear base (fusion.linear_base is false)")
    with torch.no_grad():
        for name, term in model.linear_terms.items():
            if tuple(term.weight.shape) != fit.weights[name].shape:
                raise ValueError(
                    f"linear term of {name!r} has shape {tuple(term.weight.shape)}, the fit {fit.weights[name].shape}"
                )
            term.weight.copy_(torch.as_tensor(fit.weights[name]))
            term.center.copy_(torch.as_tensor(fit.centers[name]))
        model.linear_bias.copy_(torch.as_tensor(fit.bias))


def _features(inputs: FoldInputs, name: str, rows: np.ndarray, like: int) -> np.ndarray:
    """``linear_features`` of the model inputs of cohort patients ``rows`` (float64); no rows give ``(0, F)``
    with ``F`` read off patient ``like``'s (zero) input."""
    fitted = inputs.fitted[name]
    parts = []
    for start in range(0, len(rows), _CHUNK):
        batch = torch.stack([fitted.item(int(i)).float() for i in rows[start : start + _CHUNK]])
        parts.append(linear_features(batch).double().numpy())
    if not parts:
        width = linear_features(fitted.item(like).float()[None]).shape[1]
        return np.zeros((0, width))
    return np.concatenate(parts)


def _affine_map(estimator: object, x: np.ndarray, n_outputs: int) -> tuple[np.ndarray, np.ndarray]:
    """``(coefficients (n_outputs, F), intercept (n_outputs,))`` of a fitted affine estimator, checked on ``x``."""
    width = x.shape[1]
    intercept = logits(estimator, np.zeros((1, width)), n_outputs)[0]
    columns = []
    for start in range(0, width, _PROBE_CHUNK):
        stop = min(width, start + _PROBE_CHUNK)
        probe = np.zeros((stop - start, width))
        probe[np.arange(stop - start), np.arange(start, stop)] = 1.0
        columns.append(logits(estimator, probe, n_outputs) - intercept)
    coefficients = np.concatenate(columns).T
    expected = logits(estimator, x, n_outputs)
    error = np.abs(x @ coefficients.T + intercept - expected).max()
    if not error <= 1e-6 * max(1.0, float(np.abs(expected).max())):
        raise ClinfuseError(
            f"the linear base's fit is not affine in its features (off by {error:.3g}); set fusion.linear_base: false"
        )
    return coefficients, intercept
