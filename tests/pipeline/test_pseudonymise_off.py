"""``privacy.pseudonymise: false`` (non-sensitive data) runs to a FINISHED run with raw ids in its outputs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from clinfuse.cohort import synthesize_cohort
from clinfuse.config import validate_config
from clinfuse.pipeline import run_experiment
from clinfuse.tracking import get_run


def test_run_without_pseudonyms_finishes_and_keeps_raw_ids(tmp_path: Path) -> None:
    cohort = synthesize_cohort(
        tmp_path / "coh", patients=40, seed=6, n_genes=20, modalities={"clinical": "tabular", "genomic": "genomic"}
    )
    config = validate_config(
        {
            "name": "open-data",
            "cohort": str(cohort),
            "encoders": {"clinical": {"embed_dim": 4, "hidden": [8]}, "genomic": {"embed_dim": 4, "hidden": [8]}},
            "fusion": {"hidden": 8},
            "compare": ["gated", "concat"],
            "training": {"epochs": 1, "batch_size": 8},
            "evaluation": {"folds": 2, "bootstrap": 20},
            "explain": {"max_patients": 5},
            "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "log_model": False},
            "report": {"out_dir": str(tmp_path / "reports")},
            "privacy": {"pseudonymise": False},
            "device": "cpu",
        }
    )
    outcome = run_experiment(config, project_dir=tmp_path)
    assert get_run(outcome.run_id).info.status == "FINISHED"
    predictions = pd.read_csv(outcome.run_dir / "predictions.csv")
    assert predictions["patient"].str.match(r"^S\d{4}$").all()
    # Every model of the comparison has its test predictions, on the same patients.
    models = ["gated", "concat", "clinical_only", "genomic_only", "logistic_regression", "gradient_boosting"]
    found = list(dict.fromkeys(predictions["model"]))
    # Ablation rows (``gated_without_<m>``) join only when SAGE flags a modality, which a 1-epoch model may or may not.
    assert [m for m in found if not m.startswith("gated_without_")] == models
    per_model = predictions.groupby("model")["patient"].apply(frozenset)
    assert per_model.nunique() == 1 and len(per_model.iloc[0]) == predictions["model"].value_counts().iloc[0]
    # Identifier-column values (mrn) are still never written, even with pseudonyms off.
    texts = "".join(p.read_text(errors="ignore") for p in outcome.run_dir.glob("*.csv"))
    assert "MRN" not in texts
