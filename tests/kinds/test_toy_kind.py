"""The design's acceptance test: a kind defined here, registered here, runs end to end with no package edits.

The toy kind ``lab_panel`` reads one numeric column per patient from its own CSV, standardises it with the
fold's training mean and standard deviation, and is encoded by the registered ``mlp``. The cohort's label is
driven by that value far more than by anything else, so a trained model must lean on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from clinfuse.cohort import load_cohort, synthesize_cohort
from clinfuse.config import validate_config
from clinfuse.errors import CohortError
from clinfuse.kinds import Fitted, LoadedModality, ModalityEntry, ModalityKind, register_kind, unregister_kind
from clinfuse.pipeline import run_experiment


class LabPanelEntry(ModalityEntry):
    type: Literal["lab_panel"]
    table: str
    column: str


class _Standardised(Fitted):
    def __init__(self, mean: float, std: float, values: np.ndarray | None = None) -> None:
        self.mean, self.std, self.values = mean, std, values
        self.input_shape = {"in_features": 1}
        self.feature_names = ["value"]

    def item(self, patient: int) -> torch.Tensor:
        assert self.values is not None
        value = self.values[patient]
        return torch.tensor([0.0 if np.isnan(value) else (value - self.mean) / self.std], dtype=torch.float32)

    def transform(self, raw: Any) -> torch.Tensor:
        return torch.as_tensor(((np.asarray(raw, dtype=float) - self.mean) / self.std)[:, None], dtype=torch.float32)

    def state(self) -> Any:
        return {"mean": self.mean, "std": self.std}


class LabPanelKind(ModalityKind):
    name = "lab_panel"
    entry_model = LabPanelEntry
    encoder_family = "vector"
    default_encoder = "mlp"

    def load(self, name: str, entry: Any, reader: Any, verify: bool) -> LoadedModality | None:
        frame, ids = reader.table(entry.table, f"modalities.{name}.table")
        if frame is None or ids is None or not reader.check_columns(frame, [entry.column], name, entry.table):
            return None
        values = pd.to_numeric(frame[entry.column], errors="coerce")
        by_id = dict(zip(ids, values, strict=True))
        return LoadedModality(
            ids={i for i, v in by_id.items() if pd.notna(v)},
            listed=set(by_id),
            meta={"value": by_id},
            tables=[entry.table],
        )

    def fit(self, data, prepared, train, encoder, settings, root) -> Fitted:  # type: ignore[no-untyped-def]
        train_values = np.array([data.meta["value"][i] for i in train if data.present[i]], dtype=float)
        values = np.array([np.nan if v is None else v for v in data.meta["value"]], dtype=float)
        return _Standardised(float(train_values.mean()), float(train_values.std() or 1.0), values)

    def describe(self, data, settings) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        return {}

    def raw(self, data, rows) -> Any:  # type: ignore[no-untyped-def]
        return [data.meta["value"][i] for i in rows]

    def frame_columns(self, modality: str, description: dict[str, Any]) -> list[str]:
        return [f"{modality}.value"]

    def to_frame(self, modality, data, rows) -> dict[str, list[Any]]:  # type: ignore[no-untyped-def]
        return {f"{modality}.value": [data.meta["value"][i] for i in rows]}

    def from_frame(self, modality, description, frame) -> tuple[Any, np.ndarray]:  # type: ignore[no-untyped-def]
        values = pd.to_numeric(frame[f"{modality}.value"], errors="coerce")
        present = values.notna().to_numpy()
        return list(values[present]), present

    def restore(self, description, state) -> Fitted:  # type: ignore[no-untyped-def]
        return _Standardised(state["mean"], state["std"])


@pytest.fixture
def toy_kind() -> Iterator[None]:
    register_kind(LabPanelKind)
    yield
    unregister_kind("lab_panel")


def _cohort_with_panel(root: Path) -> Path:
    """The synthetic cohort with clinical only, plus a lab panel whose value drives the label."""
    synthesize_cohort(root, patients=96, seed=2, modalities={"clinical": "tabular"}, weights={"clinical": 0.2})
    rng = np.random.default_rng(0)
    labels = pd.read_csv(root / "clinical.csv")
    value = np.where(labels["diagnosis"] == 1, 2.0, -2.0) + rng.normal(0, 0.5, len(labels))
    keep = rng.random(len(labels)) > 0.1
    pd.DataFrame({"patient_id": labels["patient_id"][keep], "crp": value[keep]}).to_csv(root / "labs.csv", index=False)
    spec = yaml.safe_load((root / "cohort.yaml").read_text())
    spec["modalities"]["labs"] = {"type": "lab_panel", "table": "labs.csv", "column": "crp"}
    (root / "cohort.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


def test_toy_kind_runs_end_to_end(tmp_path: Path, toy_kind: None) -> None:
    cohort_dir = _cohort_with_panel(tmp_path / "cohort")
    config = validate_config(
        {
            "name": "toy",
            "cohort": str(cohort_dir),
            "encoders": {"clinical": {"embed_dim": 4, "hidden": [8]}, "labs": {"embed_dim": 4, "hidden": [8]}},
            "fusion": {"method": "gated", "hidden": 8},
            "training": {"epochs": 8, "batch_size": 8, "lr": 0.01, "modality_dropout": 0.0},
            "evaluation": {"folds": 2, "test_fraction": 0.25, "bootstrap": 20},
            "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "log_model": True},
            "report": {"out_dir": str(tmp_path / "reports")},
            "device": "cpu",
        }
    )
    outcome = run_experiment(config, project_dir=tmp_path)
    contributions = pd.read_csv(outcome.run_dir / "contributions.csv")
    phi = contributions[["phi_clinical", "phi_labs"]].to_numpy()
    np.testing.assert_allclose(phi.sum(axis=1), contributions["f_x"] - contributions["f_empty"], atol=1e-6)
    assert np.abs(phi[:, 1]).mean() > np.abs(phi[:, 0]).mean()
    assert outcome.metrics["gated"]["test"]["auroc"] > 0.8
    info = json.loads((outcome.run_dir / "run_info.json").read_text())
    assert info["modality_kinds"] == {"clinical": "tabular", "labs": "lab_panel"}
    html = (outcome.run_dir / "report.html").read_text(encoding="utf-8")
    assert "labs" in html and "phi_labs" not in html.split("<body")[0]


def test_unknown_kind_lists_registered_ones(tmp_path: Path) -> None:
    cohort_dir = _cohort_with_panel(tmp_path / "cohort")
    with pytest.raises(CohortError) as error:
        load_cohort(cohort_dir)
    message = str(error.value)
    assert "modalities.labs.type" in message and "unknown modality kind 'lab_panel'" in message
    assert "genomic, image, signal, tabular" in message
    assert len(error.value.problems) == 1
