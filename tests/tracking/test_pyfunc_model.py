"""The logged pyfunc reloads weights and preprocessors and predicts like the in-memory model."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.preprocessing import StandardScaler

from clinfuse.tracking import (
    ClinfusePyfunc,
    build_predictor,
    log_pyfunc_model,
    save_predictor_artifacts,
    tracked_run,
)

COLUMNS = ["clinical.age", "clinical.bmi"]


def _model_from_spec(spec: dict) -> torch.nn.Module:
    return torch.nn.Linear(spec["in_features"], 1)


def _predict_frame(model: torch.nn.Module, preprocessors: dict, frame: pd.DataFrame) -> np.ndarray:
    x = preprocessors["clinical"].transform(frame[COLUMNS].to_numpy(dtype=float))
    with torch.no_grad():
        return torch.sigmoid(model(torch.as_tensor(x, dtype=torch.float32))).numpy().reshape(-1)


@pytest.fixture
def trained(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal([60, 25], [10, 4], size=(12, 2)), columns=COLUMNS)
    frame["genomic.TP53"] = rng.normal(size=12)
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    scaler = StandardScaler().fit(frame[COLUMNS].to_numpy())
    artifacts = save_predictor_artifacts(
        tmp_path / "artifacts", model.state_dict(), {"clinical": scaler}, {"in_features": 2}
    )
    expected = _predict_frame(model, {"clinical": scaler}, frame)
    return artifacts, frame, expected


def test_build_predictor_from_folder(trained, tmp_path):
    artifacts, frame, expected = trained
    predictor = build_predictor(tmp_path / "artifacts", _model_from_spec)
    assert not predictor.model.training
    assert predictor.spec == {"in_features": 2}
    np.testing.assert_allclose(_predict_frame(predictor.model, predictor.preprocessors, frame), expected, rtol=1e-6)


def test_logged_pyfunc_round_trip(trained, tracking_uri):
    artifacts, frame, expected = trained
    with tracked_run(run_name="model logging"):
        info = log_pyfunc_model(
            artifacts, ClinfusePyfunc(_model_from_spec, _predict_frame), frame.head(3), expected[:3]
        )
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    np.testing.assert_allclose(np.asarray(loaded.predict(frame)).reshape(-1), expected, rtol=1e-6)
    inputs = [c["name"] for c in loaded.metadata.get_input_schema().to_dict()]
    assert inputs == [*COLUMNS, "genomic.TP53"]
    requirements = Path(mlflow.pyfunc.get_model_dependencies(info.model_uri)).read_text().split()
    assert f"torch=={torch.__version__}" in requirements
