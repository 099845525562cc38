"""Feature attributions as ``shap.Explanation`` objects, so ``shap.plots.beeswarm/waterfall/bar`` work on them.

Two sources: a :class:`~clinfuse.explain.features.FeatureAttributions` just computed
(:meth:`FeatureAttributions.to_explanation`), or a run folder's ``features_<modality>.csv``
(:func:`read_feature_explanation`), the long table ``patient, feature, value, attribution[, base_value]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import shap

from clinfuse.errors import RunError

_NEEDED = ("patient", "feature", "attribution")


def numeric_data(values: np.ndarray) -> np.ndarray:
    """Feature values as floats for shap's colouring; categories and text become NaN (drawn grey)."""
    frame = pd.DataFrame(np.asarray(values, dtype=object))
    return frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)


def explanation_from_frame(frame: pd.DataFrame) -> shap.Explanation:
    """A ``shap.Explanation`` of ``(patients, features)`` from a long attribution table.

    Args:
        frame: one row per (patient, feature) with ``patient, feature, attribution`` and optionally ``value``
            (the patient's feature value) and ``base_value`` (the reference the attributions start from;
            0 when absent). A feature missing for a patient gets attribution 0 and value NaN.

    Returns:
        Rows in order of first appearance of each patient, columns in order of first appearance of each
        feature; ``display_data`` holds the raw values (categories as text), ``data`` their numeric form.
    """
    missing = [c for c in _NEEDED if c not in frame.columns]
    if missing:
        raise RunError(f"feature attributions lack the column(s) {', '.join(missing)}")
    patients = list(dict.fromkeys(frame["patient"].astype(str)))
    features = list(dict.fromkeys(frame["feature"].astype(str)))
    keyed = frame.assign(patient=frame["patient"].astype(str), feature=frame["feature"].astype(str))
    keyed = keyed.drop_duplicates(["patient", "feature"], keep="last").set_index(["patient", "feature"])
    grid = pd.MultiIndex.from_product([patients, features], names=["patient", "feature"])
    attribution = keyed["attribution"].astype(float).reindex(grid).fillna(0.0)
    values = attribution.to_numpy().reshape(len(patients), len(features))
    if "value" in keyed.columns:
        raw = keyed["value"].reindex(grid).to_numpy(dtype=object).reshape(len(patients), len(features))
    else:
        raw = np.full((len(patients), len(features)), np.nan, dtype=object)
    if "base_value" in keyed.columns:
        base = keyed["base_value"].astype(float).groupby(level="patient").mean().reindex(patients).fillna(0.0)
        base_values = base.to_numpy()
    else:
        base_values = np.zeros(len(patients))
    return shap.Explanation(
        values=values,
        base_values=base_values,
        data=numeric_data(raw),
        display_data=raw,
        feature_names=features,
    )


def read_feature_explanation(path: Path) -> shap.Explanation:
    """The ``shap.Explanation`` of a run folder's ``features_<modality>.csv``.

    Raises:
        RunError: the file is missing, unreadable or lacks ``patient``, ``feature`` or ``attribution``.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"patient": str, "feature": str})
    except (OSError, ValueError) as exc:
        raise RunError(f"{path.name}: cannot read feature attributions ({exc})") from None
    try:
        return explanation_from_frame(frame)
    except RunError as exc:
        raise RunError(f"{path.name}: {exc}") from None
