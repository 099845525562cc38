"""Metrics agree with scikit-learn / scikit-survival, undefined cases give NaN, the bootstrap is sound."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from clinfuse.config import LOWER_IS_BETTER
from clinfuse.metric_catalog import metrics_for, primary_metric, stopping_metrics
from clinfuse.training import metrics as metrics_module
from clinfuse.training.metrics import (
    bootstrap_all,
    bootstrap_ci,
    choose_threshold,
    classification_metrics,
    paired_bootstrap_test,
    summarise_folds,
    survival_metrics,
)


@pytest.fixture
def binary_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 150)
    # Rounded scores create ties, which AUROC must count as one half.
    prob = np.round(np.clip(0.3 * y + 0.7 * rng.random(150), 0, 1), 1)
    return y, prob


@pytest.fixture
def multiclass_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 160)
    prob = rng.dirichlet(np.ones(4), 160)
    prob[np.arange(160), y] += 0.3
    return y, prob / prob.sum(axis=1, keepdims=True)


def test_binary_metrics_match_sklearn(binary_data):
    y, prob = binary_data
    m = classification_metrics(y, prob, threshold=0.45)
    pred = (prob >= 0.45).astype(int)
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(y, prob))
    assert m["auprc"] == pytest.approx(skm.average_precision_score(y, prob))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
    assert m["specificity"] == pytest.approx(skm.recall_score(1 - y, 1 - pred))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, prob))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, prob), rel=1e-6)


def test_ece_by_hand():
    # Bin [0.2, 0.3): mean prob 0.2, observed 0.5 -> gap 0.3 on half the patients; bin [0.9, 1]: 0.9 vs 1.
    y = np.array([0, 1, 1, 1])
    prob = np.array([0.2, 0.2, 0.9, 0.9])
    assert classification_metrics(y, prob)["ece"] == pytest.approx(0.5 * 0.3 + 0.5 * 0.1)
    assert classification_metrics(np.array([0, 1]), np.array([0.0, 1.0]))["ece"] == pytest.approx(0.0)


def test_multiclass_metrics_match_sklearn(multiclass_data):
    y, prob = multiclass_data
    m = classification_metrics(y, prob, None, task="multiclass")
    pred = prob.argmax(axis=1)
    onehot = np.eye(4)[y]
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(y, prob, multi_class="ovr"))
    assert m["auprc"] == pytest.approx(np.mean([skm.average_precision_score(y == k, prob[:, k]) for k in range(4)]))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    spec = [skm.recall_score(y != k, pred != k) for k in range(4)]
    assert m["specificity"] == pytest.approx(np.mean(spec))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["brier"] == pytest.approx(np.mean(((prob - onehot) ** 2).sum(axis=1)))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, prob), rel=1e-6)


def test_single_class_gives_nan_not_crash():
    m = classification_metrics(np.ones(8, dtype=int), np.linspace(0.1, 0.9, 8))
    assert np.isnan(m["auroc"]) and np.isnan(m["auprc"]) and np.isnan(m["specificity"])
    assert m["sensitivity"] == pytest.approx(0.5)  # 4 of 8 scores are >= 0.5
    mc = classification_metrics(np.zeros(5, dtype=int), np.full((5, 3), 1 / 3), None, task="multiclass")
    assert np.isnan(mc["auroc"]) and np.isnan(mc["balanced_accuracy"])


def test_choose_threshold_rules():
    # Youden: 0.8 gives 2/3 - 0 > 1 - 1/2 at 0.3; F1: 0.3 gives 6/7 > 4/5 at 0.8.
    y = np.array([0, 0, 1, 1, 1])
    prob = np.array([0.1, 0.4, 0.3, 0.8, 0.9])
    assert choose_threshold(y, prob, "youden") == pytest.approx(0.8)
    assert choose_threshold(y, prob, "f1") == pytest.approx(0.3)
    assert choose_threshold(y, prob, "fixed", fixed=0.3) == 0.3
    assert choose_threshold(np.zeros(4, dtype=int), prob[:4], "youden", fixed=0.42) == 0.42


def test_bootstrap_all_matches_generic_loop(binary_data):
    y, prob = binary_data
    fast = bootstrap_all(y, prob, 0.5, "binary", n_boot=300, seed=3)
    slow = bootstrap_ci(skm.roc_auc_score, y, prob, n_boot=300, seed=3)
    assert fast["auroc"] == pytest.approx(slow)
    point = classification_metrics(y, prob, 0.5)
    for name, (lo, hi) in fast.items():
        assert lo <= point[name] <= hi, name
    assert 0.02 < fast["auroc"][1] - fast["auroc"][0] < 0.3


def test_bootstrap_skips_resamples_without_both_classes():
    y = np.array([0] * 9 + [1])
    prob = np.linspace(0, 1, 10)
    lo, hi = bootstrap_all(y, prob, 0.5, "binary", n_boot=200)["auroc"]
    assert lo == pytest.approx(1.0) and hi == pytest.approx(1.0)


def test_stratified_bootstrap_keeps_class_sizes():
    y = np.array([0] * 9 + [1])
    lo, hi = bootstrap_ci(lambda yy: yy.mean(), y, n_boot=50, stratify=y)
    assert lo == hi == pytest.approx(0.1)


def test_paired_test_detects_better_model(binary_data):
    y, prob = binary_data
    noise = np.random.default_rng(5).random(len(y))
    result = paired_bootstrap_test(y, prob, noise, metric="auroc", n_boot=400)
    assert result["diff"] == pytest.approx(skm.roc_auc_score(y, prob) - skm.roc_auc_score(y, noise))
    assert result["ci_low"] > 0 and result["p_value"] == pytest.approx(1 / 401)
    same = paired_bootstrap_test(y, prob, prob, n_boot=100)
    assert same["diff"] == 0 and same["p_value"] == 1.0


def _survival_data(seed: int, n: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    time = np.ceil(rng.exponential(np.exp(-risk)) * 10)  # integer times: plenty of ties
    event = (rng.random(n) < 0.65).astype(int)
    last = np.argmax(time)
    event[last], time[last] = 1, time[last] + 1  # keeps the censoring KM positive as sksurv requires
    return time, event, risk + rng.normal(scale=0.5, size=n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_survival_metrics_match_sksurv(seed):
    sksurv_metrics = pytest.importorskip("sksurv.metrics")
    time, event, risk = _survival_data(seed)
    risk[:6] = risk[6:12]  # tied risks
    m = survival_metrics(time, event, risk)
    expected_c = sksurv_metrics.concordance_index_censored(event.astype(bool), time, risk)[0]
    assert m["c_index"] == pytest.approx(expected_c)
    structured = np.array(list(zip(event.astype(bool), time, strict=True)), dtype=[("e", bool), ("t", float)])
    assert m["horizon"] == pytest.approx(np.median(time))
    auc, _ = sksurv_metrics.cumulative_dynamic_auc(structured, structured, risk, [m["horizon"]])
    assert m["td_auc"] == pytest.approx(auc[0])
    several = survival_metrics(time, event, risk, horizons=[5, 8])
    auc, _ = sksurv_metrics.cumulative_dynamic_auc(structured, structured, risk, [5, 8])
    assert several["td_auc_t5"] == pytest.approx(auc[0]) and several["td_auc_t8"] == pytest.approx(auc[1])


def test_survival_bootstrap_and_paired_test():
    time, event, risk = _survival_data(4)
    ci = bootstrap_all(event, risk, None, "survival", n_boot=200, time=time)
    point = survival_metrics(time, event, risk)
    assert set(ci) == {"c_index", "uno_c", "td_auc", "ibs"}
    for name, (lo, hi) in ci.items():
        assert lo < point[name] < hi, name
    result = paired_bootstrap_test(event, risk, -risk, metric="c_index", task="survival", n_boot=200, time=time)
    assert result["diff"] == pytest.approx(2 * point["c_index"] - 1, abs=0.02)
    assert result["p_value"] < 0.01
    # Lower is better for the IBS: the informative risk beats its reverse.
    ibs = paired_bootstrap_test(event, risk, -risk, metric="ibs", task="survival", n_boot=200, time=time)
    assert ibs["diff"] < 0 and ibs["ci_high"] < 0


def test_bootstrap_blocks_do_not_change_the_draws(monkeypatch):
    time, event, risk = _survival_data(7)
    whole = bootstrap_all(event, risk, None, "survival", n_boot=50, time=time)
    monkeypatch.setattr(metrics_module, "_BLOCK_CELLS", 3 * len(time))  # blocks of 3 resamples
    assert bootstrap_all(event, risk, None, "survival", n_boot=50, time=time) == whole


def test_no_events_gives_nan():
    m = survival_metrics(np.arange(1.0, 6.0), np.zeros(5), np.arange(5.0))
    assert all(np.isnan(m[name]) for name in ("c_index", "uno_c", "td_auc", "ibs"))


def test_summarise_folds_ignores_nan():
    mean, sd = summarise_folds([{"auroc": 0.6, "f1": 0.5}, {"auroc": 0.8, "f1": np.nan}, {"auroc": 0.7}])
    assert mean["auroc"] == pytest.approx(0.7) and sd["auroc"] == pytest.approx(0.1)
    assert mean["f1"] == pytest.approx(0.5) and np.isnan(sd["f1"])


def test_metric_name_lists_match_the_computed_metrics(binary_data):
    """Config checks and early-stopping direction name metrics by string; each must be one that is computed."""
    classification = set(classification_metrics(*binary_data))
    time, event, risk = _survival_data(8)
    survival = set(survival_metrics(time, event, risk)) - {"horizon"}
    assert set(metrics_for("binary")) == classification
    assert set(metrics_for("survival")) == survival
    # auroc/auprc stand for the C-index of a survival model (training.loop).
    assert set(stopping_metrics("survival")) - {"auroc", "auprc"} == survival
    assert set(LOWER_IS_BETTER) <= classification | survival
    assert {primary_metric(t) for t in ("binary", "multiclass")} <= classification
    assert primary_metric("survival") in survival
