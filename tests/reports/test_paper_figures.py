"""Figures and numbers as clinical papers show them: calibration, survival, label placement, shareable config."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.special import expit
from sksurv.nonparametric import kaplan_meier_estimator

from clinfuse.kinds import get_kind, list_kinds
from clinfuse.reports import build_report, calibration, plots, survival_figures
from clinfuse.reports.shareable import scrub_page, shareable_config, shareable_path
from clinfuse.training.metrics import classification_metrics


def test_reliability_bins_are_the_ece_bins() -> None:
    rng = np.random.default_rng(0)
    prob = rng.uniform(0, 1, 400)
    outcome = (rng.uniform(0, 1, 400) < prob**2).astype(float)
    predicted, observed, counts = calibration.reliability(outcome, prob)
    # ECE recomputed from the diagram's points equals the metrics table's ECE: same bins, same patients.
    ece_from_plot = float(np.sum(counts * np.abs(observed - predicted)) / counts.sum())
    assert ece_from_plot == pytest.approx(classification_metrics(outcome.astype(int), prob)["ece"], abs=1e-12)
    assert counts.sum() == 400 and len(counts) == 10
    assert calibration.bin_index(np.array([0.0, 0.0999, 0.1, 0.95, 1.0])).tolist() == [0, 0, 1, 9, 9]


def test_recalibration_recovers_a_known_intercept_and_slope() -> None:
    rng = np.random.default_rng(1)
    lp = rng.normal(0, 1.5, 20_000)
    # Predictions that are too extreme: the truth is logit = 0.3 + 0.5 * (the model's logit).
    outcome = (rng.uniform(size=lp.size) < expit(0.3 + 0.5 * lp)).astype(float)
    fit = calibration.recalibration(outcome, expit(lp))
    assert fit.slope == pytest.approx(0.5, abs=0.04)
    assert fit.slope_ci[0] < 0.5 < fit.slope_ci[1]
    assert fit.slope_ci[1] - fit.slope_ci[0] < 0.1
    # Calibration-in-the-large with logit(p) as an offset: mean outcome vs mean prediction.
    perfect = (rng.uniform(size=lp.size) < expit(lp)).astype(float)
    ideal = calibration.recalibration(perfect, expit(lp))
    assert ideal.intercept_ci[0] < 0 < ideal.intercept_ci[1] and ideal.slope_ci[0] < 1 < ideal.slope_ci[1]
    separated = calibration.recalibration(np.array([0, 0, 1, 1.0]), np.array([0.1, 0.2, 0.8, 0.9]))
    assert np.isnan(separated.slope)  # perfect separation: no finite slope, shown as a dash


def test_net_benefit_by_hand() -> None:
    outcome = np.array([1, 1, 0, 0, 0])
    prob = np.array([0.9, 0.4, 0.6, 0.2, 0.1])
    model, treat_all = calibration.net_benefit(outcome, prob, np.array([0.5]))
    # Threshold 0.5 treats patients 0 and 2: TP 1/5, FP 1/5, odds 1 -> 0; treating all: 2/5 - 3/5.
    assert model.tolist() == pytest.approx([0.0]) and treat_all.tolist() == pytest.approx([-0.2])
    model, _ = calibration.net_benefit(outcome, prob, np.array([0.25]))
    assert model.tolist() == pytest.approx([2 / 5 - (1 / 5) * (1 / 3)])


def test_risk_tertiles_kaplan_meier_and_log_rank() -> None:
    rng = np.random.default_rng(2)
    n = 300
    risk = rng.normal(size=n)
    time = rng.exponential(1.0 / np.exp(risk))
    event = (rng.uniform(size=n) < 0.8).astype(int)
    groups = survival_figures.risk_groups(risk, time, event)
    assert groups.names == ["low risk", "intermediate risk", "high risk"]
    assert np.bincount(groups.group).tolist() == [100, 100, 100]
    assert risk[groups.group == 2].min() > risk[groups.group == 0].max()
    assert groups.p_value < 1e-6  # the risk truly drives the hazard
    null = survival_figures.risk_groups(rng.normal(size=n), time, event)
    assert null.p_value > 0.001
    fig = survival_figures.kaplan_meier_figure(risk, time, event, groups)
    plot, table = fig.axes
    assert "log-rank p = < 0.001" in plot.get_title()
    assert len(plot.collections) == 3  # one confidence band per group
    # The numbers-at-risk row of the high-risk group matches a direct count at every tick.
    ticks = sorted({round(t.get_position()[0], 9) for t in table.texts})
    high = [int(t.get_text()) for t in table.texts if t.get_position()[1] == 2]
    assert high == [int((time[groups.group == 2] >= tick).sum()) for tick in ticks]
    # The drawn curve is scikit-survival's estimate.
    steps_t, steps_s = kaplan_meier_estimator(event[groups.group == 0].astype(bool), time[groups.group == 0])
    x, y = plot.lines[0].get_data()
    assert np.allclose(x[1:], steps_t) and np.allclose(y[1:], steps_s)
    assert plots.overlapping_texts(fig) == []


def test_td_auc_figure_needs_events() -> None:
    risk = np.array([0.1, 0.2, 0.3])
    assert survival_figures.td_auc_figure(risk, np.array([1.0, 2.0, 3.0]), np.array([0, 0, 1])) is None


@pytest.mark.parametrize(
    "steps",
    [
        [("clinical", -0.404), ("imaging", 0.002), ("genomic", 1.9)],  # a long negative bar next to the names
        [("imaging", 3.0), ("clinical", -0.001), ("genomic", -4.0)],  # a very short bar among long ones
    ],
)
def test_waterfall_labels_never_overlap(steps, monkeypatch) -> None:
    f_empty = 0.1
    f_x = f_empty + sum(phi for _, phi in steps)
    assert plots.overlapping_texts(plots.waterfall(f_empty, steps, f_x)) == []
    # The check is not vacuous: without fitting the range, the negative label runs into a row name.
    monkeypatch.setattr(plots, "fit_labels", lambda *args, **kwargs: None)
    assert plots.overlapping_texts(plots.waterfall(f_empty, steps, f_x)) != []


def test_waterfalls_of_every_explained_patient_are_clean(run_folder) -> None:
    frame = pd.read_csv(run_folder / "contributions.csv")
    modalities = [c[len("phi_") :] for c in frame.columns if c.startswith("phi_")]
    for _, row in frame.head(6).iterrows():
        steps = [(m, float(row[f"phi_{m}"])) for m in modalities]
        assert plots.overlapping_texts(plots.waterfall(row["f_empty"], steps, row["f_x"])) == []


def test_shareable_paths(tmp_path) -> None:
    project = tmp_path / "project"
    assert shareable_path(str(project / "cohorts" / "demo"), project) == "cohorts/demo"
    assert shareable_path("/srv/hospital/secret/weights.pt", project) == "…/weights.pt"
    assert shareable_path("cohorts/demo", project) == "cohorts/demo"
    assert shareable_path("C:\\Users\\jdoe\\cohort", project) == "…/cohort"
    page = f'<p>{project}/cohorts/x and {project}</p><img src="data:image/png;base64,{project}/AAAA">'
    assert scrub_page(page, project) == f'<p>cohorts/x and .</p><img src="data:image/png;base64,{project}/AAAA">'


def test_config_shows_only_the_encoder_keys_of_each_kind(tmp_path) -> None:
    text = yaml.safe_dump(
        {
            "cohort": str(tmp_path / "cohorts" / "demo"),
            "encoders": {
                "imaging": {"name": "resnet10", "embed_dim": 16, "hidden": [64], "top_k_genes": 1000},
                "genes": {"name": "snn", "embed_dim": 16, "hidden": [64], "top_k_genes": 100},
                "mystery": {"name": "x", "top_k_genes": 5},
            },
        }
    )
    shown = yaml.safe_load(shareable_config(text, {"imaging": "image", "genes": "genomic"}, tmp_path))
    assert shown["cohort"] == "cohorts/demo"
    assert shown["encoders"]["imaging"] == {"name": "resnet10", "embed_dim": 16}
    assert shown["encoders"]["genes"] == {"name": "snn", "embed_dim": 16, "hidden": [64], "top_k_genes": 100}
    assert shown["encoders"]["mystery"] == {"name": "x", "top_k_genes": 5}  # unknown kind: nothing hidden


def test_every_encoder_key_is_used_by_some_kind() -> None:
    from clinfuse.config import EncoderConfig

    used = {key for name in list_kinds() for key in get_kind(name).encoder_keys}
    assert set(EncoderConfig.model_fields) == used


def test_survival_report_shows_kaplan_meier_log_rank_and_td_auc(make_run_folder, parse) -> None:
    run_dir = make_run_folder(task="survival", n=60, n_modalities=2)
    report = parse(build_report(run_dir))
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert 'alt="Kaplan-Meier curves by predicted risk tertile with numbers at risk"' in html
    assert 'alt="Time-dependent AUC over follow-up time"' in html
    header, row = report.table("logrank")
    assert header[0] == "risk groups" and row[0] == "low risk, intermediate risk, high risk"
    assert 0.0 <= float(row[3]) <= 1.0
    assert 'alt="Calibration"' not in html  # survival has no probability calibration here


def test_binary_report_calibration_table_matches_the_metrics_ece(built_report) -> None:
    run_dir, report = built_report
    predictions = pd.read_csv(run_dir / "predictions.csv")
    y = (predictions["label"] == "malignant").astype(int).to_numpy()
    prob = predictions["prob"].to_numpy()
    rows = {r[0]: r[1:] for r in report.table("calibration")[1:]}
    assert rows["ECE (10 equal-width bins)"][0] == f"{classification_metrics(y, prob)['ece']:.3f}"
    fit = calibration.recalibration(y, prob)
    assert rows["calibration slope (ideal 1)"] == [
        f"{fit.slope:.3f}",
        f"{fit.slope_ci[0]:.3f}",
        f"{fit.slope_ci[1]:.3f}",
    ]
