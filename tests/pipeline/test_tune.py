"""``clinfuse tune``: trials on the training folds only, tracked, resumable, writing a valid tuned config."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pipeline_support import client_for

import clinfuse.pipeline.tune as tune_module
from clinfuse.cohort import load_cohort, make_splits
from clinfuse.config import load_config

pytestmark = pytest.mark.slow

N = 60


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A two-table cohort and a config with tiny models, in a project folder with its own MLflow store."""
    rng = np.random.default_rng(3)
    ids = [f"P{i:03d}" for i in range(N)]
    y = rng.permutation(np.arange(N) % 2)
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    clinical = pd.DataFrame({"patient_id": ids, "marker": y + rng.normal(scale=0.5, size=N), "age": rng.normal(size=N)})
    genomic = pd.DataFrame(rng.normal(size=(N, 30)), columns=[f"G{j:02d}" for j in range(30)])
    genomic.insert(0, "patient_id", ids)
    clinical.to_csv(cohort / "clinical.csv", index=False)
    genomic.to_csv(cohort / "genomic.csv", index=False)
    pd.DataFrame({"patient_id": ids, "diagnosis": y}).to_csv(cohort / "labels.csv", index=False)
    spec = {
        "name": "tiny",
        "id_column": "patient_id",
        "label": {"table": "labels.csv", "column": "diagnosis", "task": "binary", "positive": 1},
        "modalities": {
            "clinical": {"type": "tabular", "table": "clinical.csv"},
            "genomic": {"type": "genomic", "table": "genomic.csv"},
        },
    }
    (cohort / "cohort.yaml").write_text(yaml.safe_dump(spec))
    config = {
        "name": "tiny",
        "cohort": "cohort",
        "training": {"epochs": 2, "batch_size": 16},
        "evaluation": {"folds": 2, "test_fraction": 0.25},
        "device": "cpu",
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_tune_never_touches_test_patients_and_resumes(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[np.ndarray, list, bool]] = []
    real_train = tune_module.train_model

    def spy(plan, index, cohort, config, splits, *args, **kwargs):
        seen.append((splits.test, splits.folds, kwargs.get("predict_test", True)))
        return real_train(plan, index, cohort, config, splits, *args, **kwargs)

    monkeypatch.setattr(tune_module, "train_model", spy)
    outcome = tune_module.tune(project / "tiny.yaml", 3, project_dir=project)
    cohort = load_cohort(project / "cohort")
    test = set(make_splits(cohort.y, 2, 0.25, 0).test)
    assert len(seen) == 6  # 3 trials x 2 folds (no pruning before 3 finished trials)
    for split_test, folds, predict_test in seen:
        assert len(split_test) == 0 and predict_test is False
        ((train, val),) = folds
        assert not (set(train) | set(val)) & test
    assert 0.0 <= outcome.best_value <= 1.0 and outcome.trials == 3
    tuned = load_config(outcome.tuned_config)
    assert outcome.tuned_config == project / "tiny.tuned.yaml"
    assert tuned.training.lr == pytest.approx(outcome.best_params["lr"])
    assert tuned.encoders["clinical"].embed_dim == outcome.best_params["embed_dim"]
    assert tuned.training.epochs == 2  # untouched settings are kept
    # Resuming adds trials to the stored study instead of starting over.
    again = tune_module.tune(project / "tiny.yaml", 1, project_dir=project)
    assert again.trials == 4 and (project / "reports" / "tiny" / "tune" / "optuna.db").exists()
    client = client_for(project)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id], max_results=100)
    trial_runs = [r for r in runs if r.info.run_name.startswith("trial")]
    assert sorted(r.info.run_name for r in trial_runs) == ["trial0", "trial1", "trial2", "trial3"]
    assert all("lr" in r.data.params for r in trial_runs)
