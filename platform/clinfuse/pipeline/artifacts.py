"""Files of the run folder and the logged MLflow model."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clinfuse.cohort import Cohort
from clinfuse.config import ExperimentConfig
from clinfuse.errors import RunError
from clinfuse.tracking import ClinfusePyfunc, log_pyfunc_model, save_predictor_artifacts
from clinfuse.tracking.models import register_model
from clinfuse.tracking.pyfunc import ModelInfo, package_code_path
from clinfuse.training.inference import (
    FoldEnsemble,
    cohort_input_frame,
    ensemble_logits,
    ensemble_of,
    model_from_spec,
    predict_frame,
)
from clinfuse.training.run import TrainedModel
from clinfuse.training.survival import breslow_baseline, default_horizon


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
    trained: TrainedModel,
    cohort: Cohort,
    config: ExperimentConfig,
    folder: Path,
    example: np.ndarray,
    development: np.ndarray | None = None,
) -> ModelInfo:
    """Log the model's fold ensemble as an MLflow pyfunc with a signature and an input example.

    The input example holds the raw features of a few test patients; image paths are left empty (an absent
    image is valid input) because file names can carry patient identifiers. ``development`` (the non-test
    patients) gives what the spec keeps about the training cohort: its case mix (availability, numeric input
    means) and, for survival, the Breslow baseline hazard. ``tracking.register_as`` registers the model.

    Returns:
        The logged model's MLflow ``ModelInfo`` (``model_uri`` loads it, ``model_id`` links metrics to it).
    """
    ensemble, preprocessors = ensemble_of(trained, cohort, config)
    if development is not None:
        ensemble.spec.update(_training_facts(ensemble, preprocessors, cohort, config, trained, development))
    artifacts = save_predictor_artifacts(folder, ensemble.state_dict(), preprocessors, ensemble.spec)
    frame = cohort_input_frame(cohort, list(trained.plan.modalities), example)
    # File columns (paths and what describes the file) are emptied: the example must not point at patient files.
    for name in trained.plan.modalities:
        if cohort.modalities[name].paths is not None:
            for column in [c for c in frame.columns if c.startswith(f"{name}.")]:
                frame[column] = None
    output = predict_frame(ensemble, preprocessors, frame)
    python_model = ClinfusePyfunc(model_from_spec, predict_frame)
    # The package travels with the model so it loads where clinfuse is not installed (bytecode left behind).
    code = folder / "code" / "clinfuse"
    shutil.copytree(
        package_code_path(), code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True
    )
    info = log_pyfunc_model(artifacts, python_model, frame, output, code_paths=[str(code)])
    if config.tracking.register_as:
        register_model(info.model_uri, config.tracking.register_as)
    return info


def _training_facts(
    ensemble: FoldEnsemble,
    states: dict[str, Any],
    cohort: Cohort,
    config: ExperimentConfig,
    trained: TrainedModel,
    development: np.ndarray,
) -> dict[str, Any]:
    """Aggregates of the development patients stored in the model spec (counts and means, never a patient)."""
    modalities = list(trained.plan.modalities)
    frame = cohort_input_frame(cohort, modalities, development)
    numeric = {}
    for column in frame.columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.notna().sum() > 1 and values.notna().sum() == frame[column].notna().sum():
            numeric[column] = [float(values.mean()), float(values.std())]
    facts: dict[str, Any] = {
        "training_cohort": {
            "patients": len(development),
            "availability": {m: float(cohort.modalities[m].present[development].mean()) for m in modalities},
            "numeric": numeric,
        }
    }
    if cohort.task == "survival" and cohort.time is not None:
        risk = ensemble_logits(ensemble, states, frame)[:, 0]
        time, event = cohort.time[development], cohort.y[development]
        times, cumhaz = breslow_baseline(time, event, risk)
        horizons = list(config.evaluation.horizons) or [default_horizon(time)]
        facts["baseline"] = {"times": times.tolist(), "cumhaz": cumhaz.tolist(), "horizons": horizons}
    return facts
