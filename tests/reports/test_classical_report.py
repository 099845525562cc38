"""The report shows the classical baselines: rows in the comparison, the primary model against the best one,
and deep and classical modality attributions side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clinfuse.reports import build_report


def _add_classical(run_dir: Path) -> pd.DataFrame:
    comparison = pd.read_csv(run_dir / "comparison.csv")
    metric = comparison["metric"].iloc[0]
    gated = float(comparison.loc[comparison["model"] == "gated", "value"].iloc[0])
    extra = comparison.iloc[:2].copy()
    extra["model"], extra["kind"] = ["logistic_regression", "gradient_boosting"], "classical"
    extra["value"] = [gated + 0.02, gated - 0.1]
    comparison = pd.concat([comparison, extra], ignore_index=True)
    comparison["best_classical"] = "logistic_regression"
    comparison["diff_vs_best_classical"] = comparison["value"] - (gated + 0.02)
    comparison["p_vs_best_classical"] = np.where(comparison["model"] == "logistic_regression", np.nan, 0.25)
    comparison.to_csv(run_dir / "comparison.csv", index=False)
    assert metric
    contributions = pd.read_csv(run_dir / "contributions.csv")
    phi = [c for c in contributions.columns if c.startswith("phi_")]
    classical = []
    for model in ("logistic_regression", "gradient_boosting"):
        frame = contributions.copy()
        # The classical models lean on the first modality alone: its share must be 1 in the side-by-side table.
        frame[phi[1:]] = 0.0
        frame.insert(0, "model", model)
        classical.append(frame)
    pd.concat(classical).to_csv(run_dir / "classical_contributions.csv", index=False)
    return comparison


def test_report_compares_the_primary_model_with_the_best_classical_baseline(run_folder: Path, parse) -> None:
    comparison = _add_classical(run_folder)
    report = parse(build_report(run_folder))
    header, *rows = report.table("comparison")
    kinds = {row[0].removesuffix(" (primary)"): row[1] for row in rows}
    assert kinds["logistic_regression"] == kinds["gradient_boosting"] == "classical"
    assert "p vs best classical" in header and header[-1] == "p vs best unimodal"
    text = report.section_text("performance")
    assert "the primary model gated is 0.020 behind the best one, logistic_regression" in text
    header, *rows = report.table("attribution-comparison")
    modalities = [
        c.removeprefix("phi_") for c in pd.read_csv(run_folder / "contributions.csv").columns if c.startswith("phi_")
    ]
    assert header == ["model", "kind", *modalities]
    assert [r[0] for r in rows] == ["gated (primary)", "logistic_regression", "gradient_boosting"]
    assert rows[1][2:] == ["1.000"] + ["0.000"] * (len(modalities) - 1)
    assert len(comparison) == 7
