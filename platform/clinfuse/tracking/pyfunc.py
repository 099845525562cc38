"""A trained clinfuse model as an MLflow pyfunc: ``mlflow.pyfunc.load_model(uri).predict(frame)``.

The logged model holds three artifacts: ``weights`` (a torch state dict, loaded with ``weights_only=True``),
``preprocessors`` (the fitted scikit-learn pipelines per modality, stored with joblib, i.e. pickle: the
scikit-learn standard, so load only models you or your group logged) and ``spec`` (JSON describing how to
rebuild the network). The network and the prediction itself come from two functions the caller hands to
:class:`ClinfusePyfunc` (``model_from_spec(spec) -> nn.Module`` and ``predict_frame(model, states, frame)``,
in practice ``clinfuse.training.inference``'s), so this layer never imports training code. The clinfuse package
itself is bundled with the model (``code_paths``) and every requirement is pinned to its installed version, so
the model loads where clinfuse is not installed. The input format is described in docs/tracking.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature, infer_signature
from mlflow.models.model import ModelInfo

WEIGHTS = "weights"
PREPROCESSORS = "preprocessors"
SPEC = "spec"
_FILES = {WEIGHTS: "weights.pt", PREPROCESSORS: "preprocessors.joblib", SPEC: "spec.json"}
_DISTRIBUTION = "clinfuse"


@dataclass
class Predictor:
    """Everything needed to predict: the network (eval mode), fitted preprocessors and the spec."""

    model: torch.nn.Module
    preprocessors: dict[str, Any]
    spec: dict[str, Any]


def save_predictor_artifacts(
    directory: str | Path,
    state_dict: Mapping[str, torch.Tensor],
    preprocessors: Mapping[str, Any],
    spec: Mapping[str, Any],
) -> dict[str, str]:
    """Write the three model artifacts into ``directory``.

    Args:
        directory: output folder (created).
        state_dict: ``model.state_dict()``.
        preprocessors: modality -> fitted scikit-learn pipeline (or anything joblib can store).
        spec: JSON-serialisable description that ``model_from_spec`` turns back into the network.

    Returns:
        The ``artifacts`` mapping for :func:`log_pyfunc_model`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {key: directory / filename for key, filename in _FILES.items()}
    torch.save(dict(state_dict), paths[WEIGHTS])
    joblib.dump(dict(preprocessors), paths[PREPROCESSORS])
    paths[SPEC].write_text(json.dumps(dict(spec), indent=2, default=str), encoding="utf-8")
    return {key: str(path) for key, path in paths.items()}


def build_predictor(
    artifacts: str | Path | Mapping[str, str], model_from_spec: Callable[[dict[str, Any]], torch.nn.Module]
) -> Predictor:
    """Rebuild a predictor from the artifacts of :func:`save_predictor_artifacts`.

    Args:
        artifacts: the folder holding them, or the ``artifacts`` mapping (``context.artifacts`` in MLflow).
        model_from_spec: builds the untrained network from the spec.
    """
    if isinstance(artifacts, str | Path):
        paths = {key: str(Path(artifacts) / filename) for key, filename in _FILES.items()}
    else:
        paths = dict(artifacts)
    spec = json.loads(Path(paths[SPEC]).read_text(encoding="utf-8"))
    state = torch.load(paths[WEIGHTS], map_location="cpu", weights_only=True)
    preprocessors = joblib.load(paths[PREPROCESSORS])
    model = model_from_spec(spec)
    model.load_state_dict(state)
    model.eval()
    return Predictor(model=model, preprocessors=preprocessors, spec=spec)


class ClinfusePyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc wrapper of a clinfuse model.

    ``predict`` takes a DataFrame with one row per patient (see docs/tracking.md) and returns what
    ``predict_frame`` returns: one row per patient with ``prob``/``prob_<class>`` and ``prediction`` (the class
    chosen with the validation threshold), or ``risk`` and ``survival_t<h>`` columns.

    Args:
        model_from_spec: builds the untrained network from the spec.
        predict_frame: ``(model, states, frame) -> DataFrame``.
    """

    def __init__(
        self,
        model_from_spec: Callable[[dict[str, Any]], torch.nn.Module],
        predict_frame: Callable[[torch.nn.Module, dict[str, Any], pd.DataFrame], pd.DataFrame],
    ) -> None:
        self._model_from_spec, self._predict_frame = model_from_spec, predict_frame
        self._predictor: Predictor | None = None

    def load_context(self, context: Any) -> None:
        """Load weights, preprocessors and spec from the model's artifacts."""
        self._predictor = build_predictor(context.artifacts, self._model_from_spec)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        """Predict for every row of ``model_input``."""
        if self._predictor is None:
            self.load_context(context)
        assert self._predictor is not None
        return self._predict_frame(self._predictor.model, self._predictor.preprocessors, model_input)


def default_requirements() -> list[str]:
    """Every runtime requirement of clinfuse (its package metadata), pinned to the installed version.

    clinfuse itself is not listed: its code travels with the model (``code_paths``).
    """
    try:
        declared = metadata.requires(_DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        declared = []
    pins = []
    for requirement in declared:
        if "extra ==" in requirement:
            continue  # optional extras (dev tools, real-cohort packages) are not needed to predict
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def package_code_path() -> str:
    """The folder of the installed clinfuse package (bundled with the model as ``code_paths``)."""
    return str(Path(__file__).resolve().parents[1])


def log_pyfunc_model(
    artifacts: Mapping[str, str],
    python_model: mlflow.pyfunc.PythonModel,
    input_example: pd.DataFrame,
    signature_output: pd.DataFrame | np.ndarray,
    name: str = "model",
    pip_requirements: list[str] | None = None,
    code_paths: list[str] | None = None,
) -> ModelInfo:
    """Log a pyfunc model with its signature and input example to the active run.

    Requirements are pinned explicitly so MLflow does not start a subprocess to infer them.

    Args:
        artifacts: artifact name -> local path (see :func:`save_predictor_artifacts`).
        python_model: usually ``ClinfusePyfunc()``.
        input_example: a few rows of the input frame (pseudonymous data only: it is stored with the model).
        signature_output: the model's output on ``input_example``.
        name: model name within the run.
        pip_requirements: override of :func:`default_requirements`.
        code_paths: local code folders shipped with the model and put on ``sys.path`` when it loads.

    Returns:
        MLflow's ``ModelInfo`` (``model_uri`` loads it back).
    """
    signature: ModelSignature = infer_signature(input_example, signature_output)
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=python_model,
        artifacts=dict(artifacts),
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements or default_requirements(),
        code_paths=code_paths,
    )
