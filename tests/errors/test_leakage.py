"""Leakage canary and "never drop data silently", through a real (tiny) ``clinfuse run``.

The canary cohort hides the answer where only a leaky pipeline looks: gene ``LEAK`` is ±20 by label for the
held-out test patients but a low-variance 0/1 for everyone else, so a gene filter (top-k variance) fitted on
all patients picks it (and would score the test set near-perfectly), while one fitted on training patients
never sees it. The other 300 genes are noise: an honest run scores chance on the test set.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from clinfuse.cohort import load_cohort, make_splits
from clinfuse.cohort.preprocess import feature_names, fit_preprocessor
from clinfuse.config import EncoderConfig

N_PATIENTS, N_GENES, TOP_K, EXTRA = 64, 300, 20, 3
FOLDS, TEST_FRACTION, SEED = 2, 0.25, 0


def _canary(root: Path) -> tuple[Path, np.ndarray]:
    """Write the canary cohort; return its folder and the test indices the run will use."""
    rng = np.random.default_rng(7)
    ids = [f"P{i:03d}" for i in range(N_PATIENTS)]
    y = rng.permutation(np.arange(N_PATIENTS) % 2)
    test = make_splits(y, FOLDS, TEST_FRACTION, SEED).test
    genes = pd.DataFrame(rng.normal(size=(N_PATIENTS, N_GENES)), columns=[f"G{j:04d}" for j in range(N_GENES)])
    leak = y + rng.normal(scale=0.05, size=N_PATIENTS)
    leak[test] = np.where(y[test] == 1, 20.0, -20.0)
    genes["LEAK"] = leak
    genes.insert(0, "patient_id", ids)
    # Patients with genes but no label: excluded, and the exclusion must be counted.
    extra = genes.iloc[:EXTRA].copy()
    extra["patient_id"] = [f"Q{i:03d}" for i in range(EXTRA)]
    root.mkdir()
    pd.concat([genes, extra]).to_csv(root / "genomic.csv", index=False)
    pd.DataFrame({"patient_id": ids, "diagnosis": y}).to_csv(root / "labels.csv", index=False)
    spec = {
        "name": "canary",
        "id_column": "patient_id",
        "label": {"table": "labels.csv", "column": "diagnosis", "task": "binary", "positive": 1},
        "modalities": {"genomic": {"type": "genomic", "table": "genomic.csv"}},
    }
    (root / "cohort.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return root, test


@pytest.fixture
def canary(project: Path) -> tuple[Path, np.ndarray]:
    return _canary(project / "canary")


def test_canary_is_armed(canary: tuple[Path, np.ndarray]) -> None:
    """Positive control: a filter fitted on everyone would pick LEAK; fitted on non-test patients it cannot."""
    root, test = canary
    cohort = load_cohort(root)
    genomic = cohort.modalities["genomic"]
    encoder = EncoderConfig(top_k_genes=TOP_K, log_transform="never")
    everyone = np.arange(cohort.n)
    assert "LEAK" in feature_names(fit_preprocessor(genomic, encoder, everyone), genomic)
    train = np.setdiff1d(everyone, test)
    assert "LEAK" not in feature_names(fit_preprocessor(genomic, encoder, train), genomic)
    # LEAK alone separates the test set perfectly: a leak would show as near-perfect test AUROC.
    leak = genomic.frame["LEAK"].to_numpy()[test]
    assert set(leak[cohort.y[test] == 1]) == {20.0} and set(leak[cohort.y[test] == 0]) == {-20.0}


@pytest.mark.slow
def test_run_shows_no_leak_and_counts_exclusions(
    project: Path, canary: tuple[Path, np.ndarray], cli: Callable[[list[str]], tuple[int, str]]
) -> None:
    root, _ = canary
    code, output = cli(["cohort", "check", str(root)])
    assert code == 0, output
    assert f"excluded: {EXTRA} (labels.csv: in a modality table but not in the label table)" in output
    assert "patients: 64" in output

    config = {
        "name": "canary",
        "cohort": "canary",
        "encoders": {"genomic": {"embed_dim": 8, "hidden": [16], "top_k_genes": TOP_K, "log_transform": "never"}},
        "training": {"epochs": 2, "batch_size": 16},
        "evaluation": {"folds": FOLDS, "test_fraction": TEST_FRACTION, "bootstrap": 20},
        "seed": SEED,
        "explain": {"enabled": False},
        "report": {"enabled": False},
        "tracking": {"log_model": False},
    }
    (project / "cfg.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    code, output = cli(["run", "cfg.yaml"])
    assert code == 0, output

    run_dir = next((project / "reports" / "canary").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    auroc = metrics["genomic_only"]["test"]["auroc"]
    print(f"canary test AUROC {auroc:.3f}")
    assert auroc < 0.85, f"test AUROC {auroc:.3f} on pure noise: preprocessing saw the test patients"

    # Never silent: the 3 unlabeled patients are counted in both files of the run folder.
    info = json.loads((run_dir / "run_info.json").read_text())
    summary = json.loads((run_dir / "cohort_summary.json").read_text())
    for exclusions in (info["exclusions"], summary["exclusions"]):
        assert {"source": "labels.csv", "reason": "in a modality table but not in the label table", "count": EXTRA} in [
            {k: e[k] for k in ("source", "reason", "count")} for e in exclusions
        ]
    assert summary["patients"] == N_PATIENTS
    with sqlite3.connect(project / "mlflow.db") as connection:
        assert {row[0] for row in connection.execute("SELECT status FROM runs")} == {"FINISHED"}
