"""Classical baselines: same folds and test patients as the deep models, no leakage, exact modality Shapley."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from table_cohorts import write_table_cohort

from clinfuse.cohort import Cohort, Splits, load_cohort, make_splits
from clinfuse.config import ExperimentConfig
from clinfuse.kinds import Fitted, get_kind
from clinfuse.pipeline.classical import classical_shapley
from clinfuse.training.classical import classical_plans, design_matrix, logits, train_classical
from clinfuse.training.data import prepare_inputs
from clinfuse.training.loop import evaluate_scores, scores_from_logits

N, FOLDS, TEST_FRACTION, SEED = 120, 3, 0.25, 0


def _fit_all(cohort: Cohort, tmp_path: Path, splits: Splits | None = None) -> tuple[dict, Splits]:
    """Every classical plan of a default config, on ``splits`` (by default the run's own)."""
    cfg = ExperimentConfig(cohort=cohort.root, evaluation={"folds": FOLDS, "test_fraction": TEST_FRACTION})
    splits = splits or make_splits(cohort.y, FOLDS, TEST_FRACTION, cfg.seed)
    modalities = cohort.modality_names
    prepared = prepare_inputs(cohort, modalities, cfg, tmp_path / "cache")
    plans = classical_plans(cfg, modalities, cohort.task)
    return {p.name: train_classical(p, cohort, cfg, splits, prepared) for p in plans}, splits


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cohort, dict, object]:
    folder = tmp_path_factory.mktemp("binary")
    cohort = load_cohort(write_table_cohort(folder / "cohort", n=N))
    trained, splits = _fit_all(cohort, folder)
    return cohort, trained, splits


def test_a_column_that_determines_the_label_gives_near_perfect_auroc_on_the_run_test_patients(binary) -> None:
    cohort, trained, splits = binary
    assert list(trained) == ["logistic_regression", "gradient_boosting"]
    for name, model in trained.items():
        np.testing.assert_array_equal(model.test.index, splits.test)
        assert model.plan.kind == "classical" and len(model.folds) == FOLDS
        scores = scores_from_logits(model.test.logits, "binary")
        test = evaluate_scores("binary", cohort.y[splits.test], scores, model.threshold)
        assert test["auroc"] > 0.97, name
        assert all(f["auroc"] > 0.95 for f in model.fold_metrics), name


def test_classical_modality_shapley_is_exact_and_finds_the_informative_modality(binary) -> None:
    cohort, trained, splits = binary
    for name, model in trained.items():
        result = classical_shapley(model, cohort, splits.test, np.zeros(len(splits.test), dtype=int))
        np.testing.assert_allclose(result.phi.sum(axis=1), result.f_x - result.f_empty, atol=1e-10)
        # f_x is the ensemble's own test logit, so the explained quantity is the reported prediction.
        np.testing.assert_allclose(result.f_x, model.test.logits[:, 0], atol=1e-10)
        absent = ~cohort.modalities["genomic"].present[splits.test]
        assert absent.any() and np.all(result.phi[absent, 1] == 0.0)
        clinical, genomic = np.abs(result.phi).mean(axis=0)
        assert clinical > 5 * genomic, name


def test_inner_cross_validation_never_sees_validation_or_test_patients(binary, tmp_path: Path) -> None:
    """Leakage canary: scrambling the test patients' labels and features must leave every fitted fold model
    unchanged (preprocessing, inner CV and early stopping see the fold's training patients only)."""
    cohort, trained, splits = binary
    poisoned = copy.deepcopy(cohort)
    poisoned.y[splits.test] = 1 - poisoned.y[splits.test]
    frame = poisoned.modalities["clinical"].frame
    frame.iloc[splits.test] = 1e3 * frame.iloc[splits.test].to_numpy()
    again, _ = _fit_all(poisoned, tmp_path, splits)
    modalities = cohort.modality_names
    for name, model in trained.items():
        for fold, (train_idx, val_idx) in zip(model.folds, splits.folds, strict=True):
            redo = again[name].folds[fold.fold]
            assert not set(redo.train) & set(splits.test)
            np.testing.assert_array_equal(redo.train, train_idx)
            present = np.stack([cohort.modalities[m].present[val_idx] for m in modalities], axis=1)
            before = logits(fold.estimator, design_matrix(fold.features, val_idx, present), 1)
            after = logits(redo.estimator, design_matrix(redo.features, val_idx, present), 1)
            np.testing.assert_array_equal(before, after)
            assert redo.val_metrics == fold.val_metrics
        # Positive control: the poisoned test rows do reach prediction, so the check above could fail.
        assert not np.allclose(again[name].test.logits, model.test.logits)


def test_survival_baselines_rank_by_the_risk_column(tmp_path: Path) -> None:
    cohort = load_cohort(write_table_cohort(tmp_path / "cohort", task="survival", n=N))
    trained, splits = _fit_all(cohort, tmp_path)
    assert list(trained) == ["cox_regression", "gradient_boosting"]
    event, time = cohort.y[splits.test], cohort.time[splits.test]
    marker = cohort.modalities["clinical"].frame["marker"].to_numpy()[splits.test]
    oracle = evaluate_scores("survival", event, marker, None, time)["c_index"]
    assert oracle > 0.7
    for name, model in trained.items():
        risk = scores_from_logits(model.test.logits, "survival")
        test = evaluate_scores("survival", event, risk, None, time)
        # The planted log-hazard is the best possible ranking; both baselines come close to it.
        assert test["c_index"] > oracle - 0.06, name


def test_compare_classical_false_plans_none(tmp_path: Path) -> None:
    config = ExperimentConfig(cohort=tmp_path, compare_classical=False)
    assert classical_plans(config, ["a", "b"], "binary") == []


class _Volumes(Fitted):
    def __init__(self, volumes: torch.Tensor) -> None:
        self.volumes = volumes
        self.input_shape = {"spatial_dims": 3, "in_channels": 1, "size": list(volumes.shape[2:])}

    def item(self, patient: int) -> torch.Tensor:
        return self.volumes[patient]

    def transform(self, raw: object) -> torch.Tensor:
        raise NotImplementedError


def test_default_classical_features_summarise_a_volume_by_statistics_and_a_pooled_grid() -> None:
    volumes = torch.zeros(2, 1, 8, 8, 8)
    volumes[1, 0, :4, :4, :4] = 8.0  # one bright corner octant: mean 1, a single bright grid cell
    matrix, names = get_kind("image").classical_features(_Volumes(volumes), np.array([0, 1]))
    assert matrix.shape == (2, 7 + 64) and len(names) == 71
    stats = dict(zip(names, matrix[1], strict=True))
    assert stats["c0_mean"] == pytest.approx(1.0) and stats["c0_max"] == 8.0 and stats["c0_q50"] == 0.0
    grid = matrix[1, 7:].reshape(4, 4, 4)
    assert grid[:2, :2, :2].min() == 8.0 and grid.sum() == 8.0 * 8
    np.testing.assert_array_equal(matrix[0], 0.0)


def test_cox_baseline_skips_penalties_that_diverge(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gene tables wider than the cohort make sksurv's coordinate descent overflow at small penalties (seen on
    NKI70 and GSE7390): the baseline keeps the penalties that fit, and says so in one line when none does."""
    from sksurv.linear_model import CoxnetSurvivalAnalysis
    from sksurv.util import Surv

    from clinfuse.training.estimators import ClassicalFitError, make_estimator

    rng = np.random.default_rng(0)
    x = rng.standard_normal((80, 6))
    time = rng.exponential(10.0 * np.exp(-x[:, 0]))
    y = Surv.from_arrays(rng.random(80) < 0.7, time)
    original = CoxnetSurvivalAnalysis.fit
    floor = {"alpha": 0.05}

    def diverging_fit(self, x, y):  # type: ignore[no-untyped-def]
        fitted = original(self, x, y)
        if float(np.min(fitted.alphas_)) < floor["alpha"]:
            raise ArithmeticError("Numerical error, because weights are too large. Consider increasing alpha.")
        return fitted

    monkeypatch.setattr(CoxnetSurvivalAnalysis, "fit", diverging_fit)
    model = make_estimator("cox_regression", "survival", 0, y).fit(x, y)
    assert model.alpha_ >= floor["alpha"]
    assert np.isfinite(model.decision_function(x)).all()
    floor["alpha"] = np.inf
    with pytest.raises(ClassicalFitError, match="compare_classical: false"):
        make_estimator("cox_regression", "survival", 0, y).fit(x, y)


def test_survival_boosting_label_keeps_censoring_at_time_zero() -> None:
    """XGBoost reads the label's sign as the event flag, and 0 has none: a patient censored at time 0 must stay
    censored (negative) and every patient keep their order in time."""
    from clinfuse.training.estimators import _signed_times

    time = np.array([0.0, 0.0, 2.0, 5.0, 1.0])
    event = np.array([False, True, True, False, True])
    label = _signed_times(time, event)
    assert list(label > 0) == list(event)
    assert np.all(np.abs(label) > 0)
    np.testing.assert_array_equal(np.argsort(np.abs(label), kind="stable"), np.argsort(time, kind="stable"))
    assert np.all(_signed_times(np.zeros(3), np.array([True, False, True])) == [1.0, -1.0, 1.0])


@pytest.mark.parametrize("n", [150, 600])
def test_survival_boosting_ranks_by_the_planted_log_hazard(n: int) -> None:
    """Both paths (all rows; an early-stopping hold-out from 200 patients on) learn the planted risk, predict it
    as a log-hazard (not XGBoost's default hazard ratio), and give the same result for the same seed."""
    from sksurv.util import Surv

    from clinfuse.training.estimators import CoxBoosting, make_estimator

    rng = np.random.default_rng(1)
    x = rng.standard_normal((n + 300, 5))
    risk = 1.5 * x[:, 0] - x[:, 1]
    time = rng.exponential(np.exp(-risk))
    censor = rng.exponential(2.0, size=len(x))
    event, time = time <= censor, np.minimum(time, censor)
    y = Surv.from_arrays(event[:n], time[:n])
    model = make_estimator("gradient_boosting", "survival", 3, event[:n].astype(int))
    assert isinstance(model, CoxBoosting) and model.early_stopping == (n >= 200)
    model.fit(x[:n], y)
    predicted = model.predict(x[n:])
    assert np.corrcoef(predicted, risk[n:])[0, 1] > 0.8
    # A log-hazard takes both signs around the training average; a hazard ratio would be positive throughout.
    assert predicted.min() < 0 < predicted.max()
    again = make_estimator("gradient_boosting", "survival", 3, event[:n].astype(int)).fit(x[:n], y)
    np.testing.assert_array_equal(again.predict(x[n:]), predicted)


def test_cox_inner_search_from_one_path_per_fold_matches_a_search_over_single_penalty_fits() -> None:
    """The penalty chosen from warm-started paths (one fit per inner fold, scored by the O(n log n) C-index) is
    the one scikit-learn's grid search over cold single-penalty fits, scored by scikit-survival, would choose."""
    from sklearn.model_selection import GridSearchCV
    from sksurv.util import Surv

    from clinfuse.training.estimators import make_estimator

    rng = np.random.default_rng(4)
    x = rng.standard_normal((240, 12))
    time = np.round(rng.exponential(5.0 * np.exp(-x[:, 0] + 0.5 * x[:, 1])), 0) + 1.0  # many tied times
    y = Surv.from_arrays(rng.random(240) < 0.6, time)
    model = make_estimator("cox_regression", "survival", 0, y["event"].astype(int)).fit(x, y)
    alphas = model.best_.named_steps["coxnetsurvivalanalysis"].alphas_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        grid = {"coxnetsurvivalanalysis__alphas": [[a] for a in alphas]}
        brute = GridSearchCV(model.pipeline, grid, cv=model.inner).fit(x, y)
    assert model.alpha_ == pytest.approx(brute.best_params_["coxnetsurvivalanalysis__alphas"][0])
    # The kept model is the all-rows path read at that penalty: a real ranking, not a constant.
    risk = model.decision_function(x)
    assert np.std(risk) > 0 and np.corrcoef(risk, x[:, 0])[0, 1] > 0.5


def test_plans_sharing_fold_inputs_fit_them_once_and_predict_the_same(binary, tmp_path: Path) -> None:
    cohort, trained, splits = binary
    cfg = ExperimentConfig(cohort=cohort.root, evaluation={"folds": FOLDS, "test_fraction": TEST_FRACTION})
    prepared = prepare_inputs(cohort, cohort.modality_names, cfg, tmp_path / "cache")
    shared: dict = {}
    again = {
        p.name: train_classical(p, cohort, cfg, splits, prepared, shared)
        for p in classical_plans(cfg, cohort.modality_names, cohort.task)
    }
    assert len(shared) == FOLDS
    linear, boosting = again["logistic_regression"], again["gradient_boosting"]
    assert all(a.features is b.features for a, b in zip(linear.folds, boosting.folds, strict=True))
    for name, model in again.items():
        np.testing.assert_allclose(model.test.logits, trained[name].test.logits, rtol=1e-10, atol=1e-10)


def _sparse_binary(n: int, p: int, prevalence_shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` patients, three informative columns among ``p``; a negative shift makes the outcome rare."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p))
    logit = prevalence_shift + 1.5 * (x[:, 0] - x[:, 1] + x[:, 2])
    return x, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def test_logistic_search_keeps_the_lasso_where_few_of_many_columns_carry_the_label() -> None:
    """Three informative columns among 150 and 200 patients: the inner CV prefers the lasso over ridge, which
    zeroes most noise columns, keeps the informative ones, and (its intercept barely penalised) the base rate."""
    from sklearn.metrics import roc_auc_score

    from clinfuse.training.estimators import make_estimator

    x, y = _sparse_binary(400, 150, -1.5, seed=1)
    model = make_estimator("logistic_regression", "binary", 0, y[:200], x.shape[1]).fit(x[:200], y[:200])
    chosen = model.best_estimator_.named_steps["logisticregression"]
    assert chosen.solver == "liblinear"
    coef = chosen.coef_.ravel()
    assert np.all(coef[:3] != 0) and np.mean(coef[3:] == 0) > 0.6
    assert roc_auc_score(y[200:], model.decision_function(x[200:])) > 0.85
    mean_risk = model.predict_proba(x[:200])[:, 1].mean()
    assert mean_risk == pytest.approx(y[:200].mean(), abs=0.04)


def test_logistic_search_leaves_the_lasso_out_above_the_cell_budget_and_for_multiclass() -> None:
    from clinfuse.training import estimators

    y = np.array([0, 1] * 50)
    with_lasso = estimators.make_estimator("logistic_regression", "binary", 0, y, 20)
    assert [g["logisticregression"][0].solver for g in with_lasso.param_grid] == ["lbfgs", "liblinear"]
    wide = int(estimators._LASSO_MAX_CELLS // len(y)) + 1
    ridge_only = estimators.make_estimator("logistic_regression", "binary", 0, y, wide)
    assert [g["logisticregression"][0].solver for g in ridge_only.param_grid] == ["lbfgs"]
    multiclass = estimators.make_estimator("logistic_regression", "multiclass", 0, np.arange(99) % 3, 20)
    assert [g["logisticregression"][0].solver for g in multiclass.param_grid] == ["lbfgs"]


def test_logistic_search_keeps_ridge_where_every_column_carries_a_little() -> None:
    """Every one of 60 columns moves the label a little: the lasso's sparse fit is no better, so ridge is kept."""
    from clinfuse.training.estimators import make_estimator

    rng = np.random.default_rng(2)
    x = rng.standard_normal((240, 60))
    y = (rng.random(240) < 1 / (1 + np.exp(-0.2 * x.sum(axis=1)))).astype(int)
    model = make_estimator("logistic_regression", "binary", 0, y, x.shape[1]).fit(x, y)
    assert model.best_estimator_.named_steps["logisticregression"].solver == "lbfgs"
    assert np.all(model.best_estimator_.named_steps["logisticregression"].coef_ != 0)


def test_lasso_replaces_ridge_only_when_it_wins_by_more_than_one_standard_error() -> None:
    from sklearn.linear_model import LogisticRegression

    from clinfuse.training.estimators import _lasso_logistic, _ridge_unless_lasso_clearly_better

    ridge, lasso = LogisticRegression(), _lasso_logistic(0)

    def results(lasso_mean: float) -> dict:
        # Three inner folds; the lasso's scores spread by 0.03 (one standard error: 0.03 / sqrt(3) = 0.017).
        return {
            "param_logisticregression": [ridge, ridge, lasso, lasso],
            "mean_test_score": [0.70, 0.75, lasso_mean, 0.60],
            "std_test_score": [0.02, 0.02, 0.03, 0.03],
            **{f"split{k}_test_score": [0.0] * 4 for k in range(3)},
        }

    assert _ridge_unless_lasso_clearly_better(results(0.76)) == 1  # ahead by 0.01: within the noise
    assert _ridge_unless_lasso_clearly_better(results(0.78)) == 2  # ahead by 0.03: clearly better
    failed = results(0.78) | {"mean_test_score": [0.70, 0.75, float("nan"), float("nan")]}
    assert _ridge_unless_lasso_clearly_better(failed) == 1  # lasso fits that failed never win
