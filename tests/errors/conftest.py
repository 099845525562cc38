"""A tiny valid cohort and config in tmp_path, the CLI run in-process, and a look into the MLflow store."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest
import yaml

from clinfuse.cohort import synthesize_cohort

CONFIG = {
    "name": "errors",
    "cohort": "coh",
    "encoders": {
        "imaging": {"name": "resnet10", "embed_dim": 4},
        "clinical": {"embed_dim": 4, "hidden": [8]},
        "genomic": {"embed_dim": 4, "hidden": [8], "top_k_genes": 10},
    },
    "fusion": {"method": "gated", "hidden": 8},
    "training": {"epochs": 1, "batch_size": 8, "image_size": [8, 8]},
    "evaluation": {"folds": 2, "test_fraction": 0.25, "bootstrap": 10},
    "explain": {"enabled": False},
    "report": {"enabled": False},
    "tracking": {"log_model": False},
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The current folder of a run (mlflow.db, reports/, .clinfuse/salt land here); MLflow state restored."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    previous = mlflow.get_tracking_uri()
    yield tmp_path
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def cohort(project: Path) -> Path:
    """24 patients, 2D 8x8 PNG images, 20 genes, every modality for everyone."""
    return synthesize_cohort(project / "coh", patients=24, spatial_dims=2, size=8, seed=3, n_genes=20)


@pytest.fixture
def config(project: Path, cohort: Path) -> Path:
    """A valid 1-epoch config next to the cohort."""
    path = project / "cfg.yaml"
    path.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    return path


def run_statuses(db: Path) -> list[str]:
    """Status of every run in a SQLite MLflow store (none when the store was never created)."""
    if not db.is_file():
        return []
    with sqlite3.connect(db) as connection:
        try:
            return [row[0] for row in connection.execute("SELECT status FROM runs")]
        except sqlite3.DatabaseError:
            return []


@pytest.fixture
def usage_error(project: Path) -> Callable[[int, str, list[str]], None]:
    """Assert exit 2, one ``error:`` line holding every expected part, no traceback and no FINISHED run."""

    def check(code: int, output: str, expected: list[str]) -> None:
        assert code == 2, output
        assert "Traceback" not in output, output
        errors = [line for line in output.splitlines() if line.startswith("error: ")]
        assert errors, output
        assert any(all(part in line for part in expected) for line in errors), errors
        assert "FINISHED" not in run_statuses(project / "mlflow.db")

    return check
