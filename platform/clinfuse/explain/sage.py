"""Loss-based modality importance: SAGE (Covert et al. 2020) with modalities as players, exact over coalitions.

Modality Shapley values (:mod:`clinfuse.explain.modality`) say how much each modality moved a patient's logit:
influence. SAGE says how much each modality improves the predictions: usefulness. The game: the value of a
coalition ``S`` is the model's loss on the patients when only ``S`` is present (intersected with each
patient's presence; the rest take the model's missing-modality path), and a modality's SAGE value is its
Shapley value in the game ``u(S) = v(empty) - v(S)``, the reduction of the loss. With ``M <= 12`` modalities
the ``2^M`` coalitions are enumerated, so the values are exact and sum to ``v(empty) - v(all)``. The same game
with a metric (AUROC, C-index) as ``v`` and ``u(S) = v(S) - v(empty)`` gives the values in that metric's
units. Either way a positive value means the modality helps; compute it on held-out patients, since on the
training patients fitted noise lowers the loss too.

Bootstrap CIs resample patients and recompute the exact values per resample, through patient weights (see
:mod:`clinfuse.explain.sage_games`): no model call is repeated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from torch import nn

from clinfuse.explain import sage_games
from clinfuse.explain.coalition_outputs import CoalitionOutputs, model_coalition_outputs
from clinfuse.explain.coalitions import shapley_operator
from clinfuse.explain.modality import ModalityShapley

Task = Literal["binary", "multiclass", "survival"]
Game = Literal["loss", "metric"]

UNITS: dict[tuple[str, str], str] = {
    ("binary", "loss"): "log-loss",
    ("multiclass", "loss"): "log-loss",
    ("survival", "loss"): "partial likelihood",
    ("binary", "metric"): "AUROC",
    ("multiclass", "metric"): "AUROC",
    ("survival", "metric"): "C-index",
}


@dataclass
class ModalityImportance:
    """SAGE value of each modality with percentile bootstrap CIs.

    Args:
        modalities: modality names.
        values: ``(M,)`` SAGE values in ``unit``; they sum to ``value_empty - value_full`` for a loss game and
            to ``value_full - value_empty`` for a metric game. Positive means the modality helps.
        ci_low: ``(M,)`` lower CI bound (NaN without bootstrap).
        ci_high: ``(M,)`` upper CI bound.
        value_empty: loss (or metric) with no modality present.
        value_full: loss (or metric) with every patient's modalities present.
        unit: ``log-loss`` (nats), ``partial likelihood`` (negative Cox log partial likelihood per event),
            ``AUROC`` or ``C-index``.
        game: ``loss`` or ``metric``.
        task: ``binary``, ``multiclass`` or ``survival``.
        n_patients: patients the values were computed on.
        n_present: ``(M,)`` patients who have each modality (a rare one cannot matter much on average).
        level: CI coverage, e.g. 0.95.
        resamples: ``(B, M)`` values of the bootstrap resamples where the game was defined (for paired
            comparisons between modalities).
    """

    modalities: list[str]
    values: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    value_empty: float
    value_full: float
    unit: str
    game: str
    task: str
    n_patients: int
    n_present: np.ndarray
    level: float
    resamples: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """One row per modality (``modality_importance.csv``)."""
        return pd.DataFrame(
            {
                "modality": self.modalities,
                "value": self.values,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
                "n_present": self.n_present,
                "unit": self.unit,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``modality_importance.json``); NaN bounds become ``None``."""

        def number(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        return {
            "unit": self.unit,
            "game": self.game,
            "task": self.task,
            "n_patients": int(self.n_patients),
            "level": float(self.level),
            "n_resamples": int(len(self.resamples)),
            "value_empty": number(self.value_empty),
            "value_full": number(self.value_full),
            "modalities": {
                m: {
                    "value": number(self.values[k]),
                    "ci_low": number(self.ci_low[k]),
                    "ci_high": number(self.ci_high[k]),
                    "n_present": int(self.n_present[k]),
                }
                for k, m in enumerate(self.modalities)
            },
        }


def _check_targets(
    outputs: CoalitionOutputs, y: np.ndarray, time: np.ndarray | None, task: str, game: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate the arguments of :func:`modality_importance`; return ``y`` and ``time`` as flat arrays."""
    if (task, game) not in UNITS:
        raise ValueError(f"task must be binary, multiclass or survival and game loss or metric, got {task!r}/{game!r}")
    n, n_coalitions, n_outputs = outputs.logits.shape
    if n_coalitions != 2 ** len(outputs.modalities) or outputs.present.shape != (n, len(outputs.modalities)):
        raise ValueError("outputs.logits must be (n, 2^M, K) and outputs.present (n, M) for M modalities")
    if not np.isfinite(outputs.logits).all():
        raise ValueError("outputs.logits holds non-finite values")
    y = np.asarray(y).reshape(-1)
    if len(y) != n:
        raise ValueError(f"y has {len(y)} entries for {n} patients")
    if task == "multiclass":
        if n_outputs < 2 or not np.isin(y, np.arange(n_outputs)).all():
            raise ValueError(f"multiclass y must be class indices in [0, {n_outputs}) with K >= 2 logits")
        y = y.astype(np.int64)
    else:
        if n_outputs != 1:
            raise ValueError(f"{task} models have one output column, got {n_outputs}")
        if not np.isin(y, (0, 1)).all():
            raise ValueError(f"{task} y must be 0/1 ({'event indicators' if task == 'survival' else 'labels'})")
        y = y.astype(float)
    if task != "survival":
        return y, None
    if time is None:
        raise ValueError("survival importance needs the follow-up times (time=...)")
    time = np.asarray(time, dtype=float).reshape(-1)
    if len(time) != n or not np.isfinite(time).all():
        raise ValueError(f"time must hold {n} finite follow-up times, got {len(time)} entries")
    return y, time


def _coalition_values(
    task: str, game: str, logits: np.ndarray, y: np.ndarray, time: np.ndarray | None, w: np.ndarray
) -> np.ndarray:
    """``(resamples, 2^M)`` loss or metric of every coalition under each row of patient weights."""
    if task == "multiclass":
        function = sage_games.cross_entropy if game == "loss" else sage_games.macro_auroc
        return function(logits, y.astype(np.int64), w)
    if task == "binary":
        function = sage_games.binary_log_loss if game == "loss" else sage_games.binary_auroc
        return function(logits[:, :, 0], y, w)
    survival = sage_games.cox_partial_nll if game == "loss" else sage_games.harrell_c
    return survival(logits[:, :, 0], time, y, w)


def modality_importance(
    outputs: CoalitionOutputs,
    y: np.ndarray,
    *,
    task: Task,
    time: np.ndarray | None = None,
    game: Game = "loss",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> ModalityImportance:
    """Exact SAGE values of the modalities from coalition outputs, with bootstrap CIs over patients.

    Args:
        outputs: every coalition's outputs (one model's, or a fold ensemble's mean logits).
        y: ``(n,)`` labels (binary 0/1, multiclass class index) or event indicators (survival).
        task: ``binary`` (one logit), ``multiclass`` (K logits) or ``survival`` (one log-risk).
        time: ``(n,)`` follow-up times; survival only.
        game: ``loss`` (log-loss, or Cox partial likelihood for survival) or ``metric`` (AUROC, one-vs-rest
            macro for multiclass; Harrell's C-index for survival).
        n_boot: bootstrap resamples of the patients; 0 for point estimates only (NaN bounds).
        level: CI coverage in (0, 1).
        seed: seed of the resampling.

    Returns:
        The values, with ``sum(values) == value_empty - value_full`` (loss) or ``value_full - value_empty``
        (metric) to float rounding. Resamples where the game is undefined (no event, a single class) are left
        out of the CIs; ``len(resamples)`` says how many remain.
    """
    y, time = _check_targets(outputs, y, time, task, game)
    if n_boot < 0 or not 0 < level < 1:
        raise ValueError(f"n_boot must be >= 0 and level in (0, 1), got {n_boot} and {level}")
    n, n_coalitions, _ = outputs.logits.shape
    n_modalities = len(outputs.modalities)
    # Every player is in the full coalition; a modality no patient has is a dummy and gets 0 (to float rounding).
    operator = shapley_operator(n_coalitions - 1, n_modalities)
    sign = 1.0 if game == "loss" else -1.0

    def sage(values: np.ndarray) -> np.ndarray:
        return (sign * (values[:, :1] - values)) @ operator

    point = _coalition_values(task, game, outputs.logits, y, time, np.ones((1, n)))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n))
    # Weights = how often each patient was drawn: the weighted games equal the games on the resampled patients.
    counts = np.bincount((draws + n * np.arange(n_boot)[:, None]).ravel(), minlength=n_boot * n)
    counts = counts.reshape(n_boot, n).astype(float)
    boot_values = _coalition_values(task, game, outputs.logits, y, time, counts)
    resamples = sage(boot_values[np.isfinite(boot_values).all(axis=1)])
    if len(resamples):
        ci_low, ci_high = np.percentile(resamples, [100 * (1 - level) / 2, 100 * (1 + level) / 2], axis=0)
    else:
        ci_low = ci_high = np.full(n_modalities, np.nan)
    return ModalityImportance(
        modalities=list(outputs.modalities),
        values=sage(point)[0],
        ci_low=ci_low,
        ci_high=ci_high,
        value_empty=float(point[0, 0]),
        value_full=float(point[0, -1]),
        unit=UNITS[task, game],
        game=game,
        task=task,
        n_patients=n,
        n_present=outputs.present.sum(axis=0),
        level=level,
        resamples=resamples,
    )


def model_modality_importance(
    model: nn.Module,
    data: Any,
    y: np.ndarray,
    *,
    task: Task,
    time: np.ndarray | None = None,
    game: Game = "loss",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    batch_size: int = 65536,
    float64: bool = True,
) -> ModalityImportance:
    """SAGE values of one model: :func:`model_coalition_outputs`, then :func:`modality_importance`.

    For a fold ensemble call :func:`model_coalition_outputs` per fold, :func:`average_coalition_outputs`, then
    :func:`modality_importance`.

    Args:
        model: a ``MultimodalModel`` (``modalities``, ``encode``, ``fuse`` returning ``FusionOutput``).
        data: a batch dict, an ``(inputs, present)`` pair, or an iterable of batch dicts (a DataLoader).
        y: ``(n,)`` labels or event indicators, in the order of the patients in ``data``.
        task: ``binary``, ``multiclass`` or ``survival``.
        time: ``(n,)`` follow-up times (survival), in the same order.
        game: ``loss`` or ``metric`` (see :func:`modality_importance`).
        n_boot: bootstrap resamples; 0 for point estimates only.
        level: CI coverage in (0, 1).
        seed: seed of the resampling.
        batch_size: (patient, coalition) rows per ``fuse`` call.
        float64: fuse on a float64 copy of the model.
    """
    outputs = model_coalition_outputs(model, data, batch_size=batch_size, float64=float64)
    return modality_importance(outputs, y, task=task, time=time, game=game, n_boot=n_boot, level=level, seed=seed)


def influence_without_usefulness(
    importance: ModalityImportance,
    influence: ModalityShapley | Mapping[str, float],
    *,
    ratio: float = 1 / 3,
) -> dict[str, str]:
    """Modalities the model reacts to strongly but that do not make its predictions better.

    A modality is flagged when its mean ``|phi|`` exceeds ``ratio`` times the largest modality's while its
    SAGE CI does not lie above 0 (it includes 0, or lies below it: the modality makes predictions worse).
    Meaningful when ``importance`` was computed on held-out patients.

    Args:
        importance: SAGE values with bootstrap CIs.
        influence: per-patient modality Shapley values (mean ``|phi|`` over all patients, absent = 0), or the
            mean ``|phi|`` per modality.
        ratio: share of the top modality's mean ``|phi|`` above which a modality counts as influential.

    Returns:
        ``{modality: one plain-words sentence}`` for each flagged modality, in modality order.
    """
    if isinstance(influence, ModalityShapley):
        influence = dict(zip(influence.modalities, np.abs(influence.phi).mean(axis=0), strict=True))
    if set(influence) != set(importance.modalities):
        raise ValueError(f"influence covers {sorted(influence)}, importance {sorted(importance.modalities)}")
    if not (np.isfinite(importance.ci_low).all() and np.isfinite(importance.ci_high).all()):
        raise ValueError("flagging needs bootstrap CIs: compute the importance with n_boot > 0")
    top_name = max(importance.modalities, key=lambda m: influence[m])
    top = float(influence[top_name])
    flags: dict[str, str] = {}
    for k, m in enumerate(importance.modalities):
        strength = float(influence[m])
        if top <= 0 or strength <= ratio * top or importance.ci_low[k] > 0:
            continue
        relative = "more than any other modality" if m == top_name else f"{strength / top:.0%} of {top_name}'s"
        effect = "makes its predictions worse" if importance.ci_high[k] < 0 else "does not improve its predictions"
        flags[m] = (
            f"the model reacts to {m} (mean |phi| {strength:.3g}, {relative}), but {m} {effect} on held-out "
            f"patients (SAGE {importance.values[k]:+.3g} {importance.unit}, {importance.level:.0%} CI "
            f"{importance.ci_low[k]:+.3g} to {importance.ci_high[k]:+.3g}): likely noise the model fitted"
        )
    return flags
