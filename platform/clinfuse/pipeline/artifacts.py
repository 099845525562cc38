"""Files of the run folder and the logged MLflow model."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from clinfuse.cohort import Cohort
from clinfuse.config import ExperimentConfig
from clinfuse.errors import RunError
from clinfuse.tracking import ClinfusePyfunc, log_pyfunc_model, save_predictor_artifacts
from clinfuse.training.inference import cohort_input_frame, ensemble_of, model_from_spec, predict_frame
from clinfuse.training.run import TrainedModel


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def ensure_writable_dir(path: Path, key: str) -> None:
    """Create ``path`` and prove it is writable before a run starts (so no run fails late on it).

    Args:
        path: the folder to write into.
        key: the config key naming it (for the message).

    Raises:
        RunError: the folder cannot be created or written.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise RunError(
            f"config key '{key}': cannot write to {path} ({exc.strerror or exc}); choose a writable folder, "
            f"e.g. --set {key}=reports"
        ) from None


def write_json(path: Path, data: Any) -> None:
    """Write JSON with NumPy scalars converted and NaN/inf as ``null`` (strict JSON for every reader)."""
    path.write_text(json.dumps(_plain(data), indent=2), encoding="utf-8")


def log_model(
    trained: TrainedModel, cohort: Cohort, config: ExperimentConfig, folder: Path, example: np.ndarray
) -> str:
    """Log the model's fold ensemble as an MLflow pyfunc with a signature and an input example.

    The input example holds the raw features of a few test patients; image paths are left empty (an absent
    image is valid input) because file names can carry patient identifiers.

    Returns:
        The logged model's id (to link metrics to it).
    """
    ensemble, preprocessors = ensemble_of(trained, cohort, config)
    artifacts = save_predictor_artifacts(folder, ensemble.state_dict(), preprocessors, ensemble.spec)
    frame = cohort_input_frame(cohort, list(trained.plan.modalities), example)
    # File columns (paths and what describes the file) are emptied: the example must not point at patient files.
    for name in trained.plan.modalities:
        if cohort.modalities[name].paths is not None:
            for column in [c for c in frame.columns if c.startswith(f"{name}.")]:
                frame[column] = None
    output = predict_frame(ensemble, preprocessors, frame)
    return log_pyfunc_model(artifacts, ClinfusePyfunc(model_from_spec, predict_frame), frame, output).model_id
