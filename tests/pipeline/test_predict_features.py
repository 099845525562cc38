"""``clinfuse predict --explain``: per-patient top features of a logged model on a new cohort.

A clinical table whose column ``signal`` alone decides the label (the others are noise) trains a tiny tabular
model (2 folds); a second cohort from the same generator is predicted with ``--explain``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from clinfuse.config import load_config
from clinfuse.pipeline import predict as predict_module
from clinfuse.pipeline import run_experiment
from clinfuse.pipeline.predict import predict_cohort
from clinfuse.training.inference import ensemble_inputs

pytestmark = pytest.mark.slow


def _cohort(folder: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    table = pd.DataFrame(
        {
            "patient_id": [f"PX{seed}{i:04d}" for i in range(n)],
            "mrn": [f"MRN{seed}{rng.integers(10**6, 10**7)}" for _ in range(n)],
            "diagnosis": (signal > 0).astype(int),
            "signal": np.round(signal, 4),
            "noise_a": np.round(rng.normal(size=n), 4),
            "noise_b": np.round(rng.normal(size=n), 4),
            "sex": rng.choice(["F", "M"], n),
        }
    )
    folder.mkdir(parents=True)
    table.to_csv(folder / "clinical.csv", index=False)
    spec = {
        "name": "onecolumn",
        "id_column": "patient_id",
        "label": {"table": "clinical.csv", "column": "diagnosis", "task": "binary", "positive": 1},
        "modalities": {
            "clinical": {"type": "tabular", "table": "clinical.csv", "categorical": ["sex"], "identifiers": ["mrn"]}
        },
    }
    (folder / "cohort.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder


def test_the_deciding_column_ranks_first_and_attributions_add_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = _cohort(tmp_path / "train", 80, seed=1)
    config = {
        "name": "onecol",
        "cohort": str(train),
        "encoders": {"clinical": {"embed_dim": 8, "hidden": [16]}},
        "fusion": {"method": "concat"},
        "training": {"epochs": 25, "batch_size": 16, "lr": 0.01},
        "evaluation": {"folds": 2, "test_fraction": 0.25, "bootstrap": 10},
        "explain": {"enabled": False},
        "report": {"enabled": False},
        "compare_classical": False,
        "device": "cpu",
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    run = run_experiment(load_config(tmp_path / "cfg.yaml", []), project_dir=tmp_path)
    other = _cohort(tmp_path / "ext", 30, seed=2)
    preparations = []

    def counted(*args: object, **kwargs: object) -> object:
        preparations.append(1)
        return ensemble_inputs(*args, **kwargs)

    monkeypatch.setattr(predict_module, "ensemble_inputs", counted)
    outcome = predict_cohort(
        run.run_id,
        other,
        tmp_path / "out" / "ext.csv",
        explain=True,
        explain_max=24,
        report=True,
        project_dir=tmp_path,
        tracking_uri=f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}",
    )
    # predictions, modality Shapley values and feature attributions share one preparation of the inputs
    assert len(preparations) == 1
    frame = pd.read_csv(outcome.out, dtype={"patient": str})
    # the first 24 patients (cohort order) are explained, every patient has modality Shapley values
    assert frame["top_features_clinical"].iloc[24:].isna().all() and frame["shapley_clinical"].notna().all()
    top = frame["top_features_clinical"].iloc[:24].str.split(" ").str[0]
    assert (top == "signal").mean() >= 0.8, frame["top_features_clinical"].head().tolist()
    assert outcome.features is not None
    long = pd.read_csv(outcome.features, dtype={"patient": str})
    assert set(long["feature"]) == {"signal", "noise_a", "noise_b", "sex"}
    assert set(long["patient"]) == set(frame["patient"].iloc[:24]) and set(long["modality"]) == {"clinical"}
    # Exact Shapley values are efficient: with one modality the explained function is the whole ensemble's
    # logit, so base value + the patient's attributions is the logit of its predicted probability.
    per_patient = long.groupby("patient").agg(total=("attribution", "sum"), base=("base_value", "first"))
    prob = frame.set_index("patient")["prob"].reindex(per_patient.index)
    assert len(per_patient) == 24
    np.testing.assert_allclose(1 / (1 + np.exp(-(per_patient["base"] + per_patient["total"]))), prob, atol=1e-5)
    # the cohort ranking reaches the external-validation report
    facts = json.loads((outcome.out.parent / "ext_external" / "external.json").read_text())
    assert facts["features"]["clinical"][0]["feature"] == "signal"
    assert outcome.report is not None and "Top features" in outcome.report.read_text()
    raw = set(pd.read_csv(other / "clinical.csv", dtype=str)[["patient_id", "mrn"]].to_numpy().ravel())
    for path in [outcome.out, outcome.features, Path(f"{outcome.out}.json"), outcome.report]:
        text = path.read_text()
        assert not [r for r in raw if r in text], path
