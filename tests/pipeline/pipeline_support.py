"""Helpers shared by the end-to-end tests: the base config, distinctive raw ids, store and CLI access."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

N_PATIENTS = 40
RUN_TIMEOUT_S = 900

# Image volumes are written at 16^3 and resized to 8^3 for the model: occlusion saliency and the 3D ResNet
# dominate the run time and scale with the voxel count.
BASE_CONFIG: dict[str, Any] = {
    "encoders": {
        "imaging": {"name": "resnet10", "embed_dim": 8},
        "clinical": {"embed_dim": 8, "hidden": [16]},
        "genomic": {"embed_dim": 8, "hidden": [16], "top_k_genes": 30},
    },
    "fusion": {"method": "gated", "hidden": 16},
    "training": {"epochs": 2, "batch_size": 8, "image_size": [8, 8, 8]},
    "evaluation": {"folds": 2, "test_fraction": 0.25, "bootstrap": 50},
    "device": "cpu",
}


def raw_id(number: int) -> str:
    """A raw patient id long and odd enough that finding it anywhere can only mean a leak."""
    return f"PATIENT-{number:04d}-QZX"


def rename_ids(folder: Path) -> None:
    """Rewrite the synthetic ``S0001`` ids to :func:`raw_id` in every table (and truth.json)."""
    mapping = {f"S{i:04d}": raw_id(i) for i in range(1, N_PATIENTS + 1)}
    for name in ("clinical.csv", "genomic.csv", "images.csv"):
        table = pd.read_csv(folder / name, dtype={"patient_id": str})
        table["patient_id"] = table["patient_id"].map(mapping)
        table.to_csv(folder / name, index=False)
    truth = json.loads((folder / "truth.json").read_text())
    truth["contributions"] = {mapping[k]: v for k, v in truth["contributions"].items()}
    (folder / "truth.json").write_text(json.dumps(truth))


def write_config(path: Path, cohort: Path, name: str, **sections: Any) -> Path:
    """Write an experiment YAML: :data:`BASE_CONFIG` plus ``sections`` (merged one level deep)."""
    data: dict[str, Any] = {"name": name, "cohort": str(cohort), **json.loads(json.dumps(BASE_CONFIG))}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_folders(project: Path, experiment: str) -> dict[str, Path]:
    """Run id -> run folder of every run of ``experiment`` in a project."""
    root = project / "reports" / experiment
    return {p.name: p for p in root.iterdir() if p.is_dir()} if root.is_dir() else {}


def client_for(project: Path) -> MlflowClient:
    """A client on the project's local store (the default store of ``clinfuse run``)."""
    return MlflowClient(f"sqlite:///{(project / 'mlflow.db').resolve().as_posix()}")


def use_store(project: Path, monkeypatch: Any) -> None:
    """Point the fluent MLflow API at the project's store for one test (MLflow exports the URI to the
    environment; the monkeypatched variable is restored after the test)."""
    import mlflow

    uri = f"sqlite:///{(project / 'mlflow.db').resolve().as_posix()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)


def cli(*args: str) -> int:
    """Run ``clinfuse ARGS`` in-process; the exit code (typer ends with SystemExit)."""
    from clinfuse.cli import main

    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@dataclass
class CompareRun:
    """The comparison run made once through the CLI."""

    project: Path
    run_id: str
    run_dir: Path
    stdout: str
    stderr: str
    seconds: float


@contextmanager
def inside(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Work in ``folder`` with no ``MLFLOW_*`` variable inherited; SIGTERM handling restored afterwards."""
    monkeypatch.chdir(folder)
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        monkeypatch.delenv(key)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield folder
    finally:
        signal.signal(signal.SIGTERM, previous)
