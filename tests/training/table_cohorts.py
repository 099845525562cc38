"""A clinical + genomic table cohort with one informative clinical column, for the classical and linear-base tests.

A module of its own (not conftest) so tests can import it unambiguously.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml


def write_table_cohort(
    root: Path, task: str = "binary", seed: int = 0, n: int = 120, marker_noise: float = 0.01, genes: int = 40
) -> Path:
    """``clinical`` holds ``marker`` (the label plus normal noise of sd ``marker_noise``, or the log-hazard for
    survival) and noise columns; ``genomic`` is noise; a fifth of the patients lack genomic data."""
    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in range(n)]
    y = rng.permutation(np.arange(n) % 2)
    clinical = pd.DataFrame(rng.normal(size=(n, 3)), columns=["age", "bmi", "score"])
    labels = pd.DataFrame({"patient_id": ids})
    if task == "survival":
        risk = rng.normal(size=n)
        clinical["marker"] = risk
        labels["time"] = rng.exponential(np.exp(-2.0 * risk))
        labels["event"] = (rng.random(n) < 0.8).astype(int)
        label = {"table": "labels.csv", "task": "survival", "time_column": "time", "event_column": "event"}
    else:
        clinical["marker"] = y + rng.normal(scale=marker_noise, size=n)
        labels["diagnosis"] = y
        label = {"table": "labels.csv", "column": "diagnosis", "task": "binary", "positive": 1}
    clinical.insert(0, "patient_id", ids)
    genomic = pd.DataFrame(rng.normal(size=(n, genes)), columns=[f"G{j:02d}" for j in range(genes)])
    genomic.insert(0, "patient_id", ids)
    root.mkdir()
    clinical.to_csv(root / "clinical.csv", index=False)
    genomic.iloc[n // 5 :].to_csv(root / "genomic.csv", index=False)
    labels.to_csv(root / "labels.csv", index=False)
    spec = {
        "name": "classical",
        "id_column": "patient_id",
        "label": label,
        "modalities": {
            "clinical": {"type": "tabular", "table": "clinical.csv"},
            "genomic": {"type": "genomic", "table": "genomic.csv"},
        },
    }
    (root / "cohort.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return root
