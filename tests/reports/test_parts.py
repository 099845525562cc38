"""The pieces behind the report: number formatting, Shapley summaries, patient selection, Kaplan-Meier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clinfuse.reports.markup import esc, fmt
from clinfuse.reports.modality_summary import by_modality, interactions, per_class
from clinfuse.reports.run_folder import RunFolder, held_out_predictions, label_indices, load_run_folder
from clinfuse.reports.section_contributions import cohort_contributions, efficiency_gap
from clinfuse.reports.section_patients import disagreement, select_patients


def test_fmt_and_esc() -> None:
    assert fmt(0.12345) == "0.123"
    assert fmt(-0.0004) == "0.000"  # never "-0.000"
    assert fmt(np.int64(12)) == "12"
    assert fmt(float("nan")) == "—" and fmt(None) == "—"
    assert fmt(np.bool_(True)) == "yes"
    assert esc('<a href="x">&') == "&lt;a href=&quot;x&quot;&gt;&amp;"


def test_label_indices_accepts_names_or_indices() -> None:
    classes = ["benign", "malignant"]
    assert label_indices(pd.Series(["malignant", "benign"]), classes).tolist() == [1, 0]
    assert label_indices(pd.Series([1, 0, 1]), classes).tolist() == [1, 0, 1]
    assert label_indices(pd.Series(["oops"]), classes).tolist() == [-1]


def _frame() -> pd.DataFrame:
    # a: confident and correct; b: confident error; c: modalities pull hard in opposite directions.
    return pd.DataFrame(
        {
            "patient": ["a", "b", "c", "d"],
            "label": ["malignant", "malignant", "benign", "benign"],
            "prediction": ["malignant", "benign", "benign", "benign"],
            "prob": [0.95, 0.10, 0.45, 0.40],
            "f_empty": [0.0, 0.0, 0.0, 0.0],
            "phi_img": [2.9, -1.2, 1.5, -0.3],
            "phi_clin": [0.0, -1.0, -1.7, -0.1],
            "present_img": [True, True, True, True],
            "present_clin": [False, True, True, True],
        }
    ).assign(f_x=lambda f: f["phi_img"] + f["phi_clin"])


def _run(tmp_path: Path, task: str = "binary") -> RunFolder:
    info = {"task": task, "classes": ["benign", "malignant"], "modalities": ["img", "clin"]}
    return RunFolder(path=tmp_path, files={"run_info.json": info})


def test_cohort_contributions_and_efficiency_gap() -> None:
    frame = _frame()
    summary = cohort_contributions(frame, ["img", "clin"]).set_index("modality")
    assert summary.loc["img", "mean_abs_phi"] == pytest.approx((2.9 + 1.2 + 1.5 + 0.3) / 4)
    assert summary.loc["clin", "mean_phi"] == pytest.approx((0.0 - 1.0 - 1.7 - 0.1) / 4)
    assert summary.loc["clin", "mean_abs_phi_present"] == pytest.approx((1.0 + 1.7 + 0.1) / 3)
    assert summary.loc["clin", "n_present"] == 3
    assert summary["share"].sum() == pytest.approx(1.0)
    assert efficiency_gap(frame, ["img", "clin"]) == pytest.approx(0.0)
    frame.loc[2, "f_x"] += 0.25  # a broken explanation is visible in the check
    assert efficiency_gap(frame, ["img", "clin"]) == pytest.approx(0.25)


def test_disagreement_is_the_weaker_of_the_opposite_pulls() -> None:
    phi = np.array([[2.0, -0.5, 0.1], [1.0, 0.5, 0.0], [-3.0, 4.0, -1.0]])
    assert disagreement(phi).tolist() == [0.5, 0.0, 3.0]


def test_select_patients_covers_each_group_without_duplicates(tmp_path: Path) -> None:
    chosen = select_patients(_run(tmp_path), _frame(), ["img", "clin"], 3)
    assert chosen == [
        (0, "most confident correct prediction"),
        (1, "confident error"),
        (2, "modalities disagree (opposite-sign φ)"),
    ]
    everyone = select_patients(_run(tmp_path), _frame(), ["img", "clin"], 10)
    assert sorted(i for i, _ in everyone) == [0, 1, 2, 3]
    assert select_patients(_run(tmp_path), _frame(), ["img", "clin"], 0) == []


def test_select_patients_for_survival_uses_risk(tmp_path: Path) -> None:
    chosen = select_patients(_run(tmp_path, "survival"), _frame(), ["img", "clin"], 2)
    assert chosen == [(0, "highest predicted risk"), (1, "lowest predicted risk")]


def test_held_out_predictions_prefer_the_test_fold(tmp_path: Path) -> None:
    pd.DataFrame(
        {"patient": ["a", "b", "c"], "fold": ["0", "test", "1"], "label": [0, 1, 0], "prob": [0.1, 0.9, 0.2]}
    ).to_csv(tmp_path / "predictions.csv", index=False)
    rows, how = held_out_predictions(load_run_folder(tmp_path))
    assert rows["patient"].tolist() == ["b"] and how == "held-out test patients"


def test_modality_summary_layouts_agree() -> None:
    statistic_major = {"mean_phi": {"img": 0.5, "clin": -0.25}, "mean_abs_phi": {"img": 0.75, "clin": 0.5}}
    modality_major = {
        "img": {"mean_phi": 0.5, "mean_abs_phi": 0.75},
        "clin": {"mean_phi": -0.25, "mean_abs_phi": 0.5},
    }
    a, b = by_modality(statistic_major), by_modality(modality_major)
    assert list(a) == ["img", "clin"]
    for m in ("img", "clin"):
        assert (a[m]["mean_phi"], a[m]["mean_abs_phi"]) == (b[m]["mean_phi"], b[m]["mean_abs_phi"])
    matrix = {"interactions": {"modalities": ["img", "clin"], "mean": [[0.4, 0.1], [0.1, -0.35]]}}
    nested = {"interactions": {"img": {"img": 0.4, "clin": 0.1}, "clin": {"img": 0.1, "clin": -0.35}}}
    assert interactions(matrix) == interactions(nested) == (["img", "clin"], [[0.4, 0.1], [0.1, -0.35]])
    assert per_class({"by_true_class": {"0": statistic_major}}, "true")["0"]["clin"]["mean_phi"] == -0.25


def test_beeswarm_of_a_feature_never_recorded_warns_nothing() -> None:
    """A feature missing for every explained patient (e.g. a lab nobody in the test set had) draws without numpy's
    all-NaN warning reaching the console of a run."""
    import warnings

    import numpy as np
    import shap

    from clinfuse.reports.section_features import beeswarm_figure

    rng = np.random.default_rng(0)
    values = rng.standard_normal((30, 3))
    data = rng.standard_normal((30, 3))
    data[:, 1] = np.nan
    explanation = shap.Explanation(values=values, data=data, feature_names=["age", "crp", "bmi"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = beeswarm_figure(explanation, "clinical")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()]
