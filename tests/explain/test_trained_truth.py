"""A model trained where only genomics carries signal must say so: largest mean |phi| and the planted genes on top."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from clinfuse.cohort import synthesize_cohort
from clinfuse.config import validate_config
from clinfuse.pipeline import run_experiment


@pytest.mark.slow
def test_genomic_only_signal_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cohort = synthesize_cohort(
        tmp_path / "coh",
        patients=200,
        spatial_dims=2,
        size=8,
        seed=4,
        uninformative=["imaging", "clinical"],
        weights={"genomic": 4.0},
        n_genes=120,
    )
    truth = json.loads((cohort / "truth.json").read_text())
    config = validate_config(
        {
            "name": "genomic_truth",
            "cohort": str(cohort),
            # Tabular modalities keep the test fast; the image path is covered by the pipeline tests.
            "modalities": ["clinical", "genomic"],
            "encoders": {
                "clinical": {"embed_dim": 8, "hidden": [16]},
                "genomic": {"embed_dim": 8, "hidden": [32], "top_k_genes": 120},
            },
            "fusion": {"method": "gated", "hidden": 16},
            "training": {"epochs": 20, "batch_size": 16, "lr": 0.003, "early_stopping": {"patience": 25}},
            "evaluation": {"folds": 2, "test_fraction": 0.25, "bootstrap": 20},
            "explain": {"max_patients": 30, "saliency_patients": 0},
            "report": {"enabled": False},
            "tracking": {"log_model": False},
        }
    )
    outcome = run_experiment(config, project_dir=tmp_path)
    assert outcome.metrics["gated"]["test"]["auroc"] > 0.75

    contributions = pd.read_csv(outcome.run_dir / "contributions.csv")
    mean_abs = {m: contributions[f"phi_{m}"].abs().mean() for m in ("clinical", "genomic")}
    assert mean_abs["genomic"] > 3 * mean_abs["clinical"]

    genes = pd.read_csv(outcome.run_dir / "features_genomic.csv")
    ranking = genes.assign(abs_attr=genes["attribution"].abs()).groupby("feature")["abs_attr"].mean()
    top = set(ranking.sort_values(ascending=False).index[:10])
    planted = set(truth["informative"]["genomic"])
    # 10 planted genes among 120: chance overlap of a random top 10 is below 1.
    assert len(top & planted) >= 6
