"""Fitting a deep model's linear base: the fold's penalised fit, on its training patients only, kept if training
never improves on it."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from table_cohorts import write_table_cohort

from clinfuse.cohort import load_cohort, make_splits
from clinfuse.config import ExperimentConfig
from clinfuse.errors import ClinfuseError
from clinfuse.fusion import build_model
from clinfuse.training.classical import classical_plans, design_matrix, logits, train_classical
from clinfuse.training.data import PatientDataset, encoder_specs, fit_fold_inputs, make_loader, prepare_inputs
from clinfuse.training.linear_base import _affine_map, linear_fit, set_linear_base
from clinfuse.training.loop import predict, train_fold

N = 90


class _Fold:
    def __init__(self, tmp_path: Path, task: str) -> None:
        self.cohort = load_cohort(
            write_table_cohort(tmp_path / "cohort", task, seed=4, n=N, marker_noise=0.8, genes=20)
        )
        self.config = ExperimentConfig(cohort=self.cohort.root, evaluation={"folds": 3, "test_fraction": 0.25})
        self.splits = make_splits(self.cohort.y, 3, 0.25, self.config.seed)
        self.modalities = self.cohort.modality_names
        self.prepared = prepare_inputs(self.cohort, self.modalities, self.config, tmp_path / "cache")
        self.train, self.val = self.splits.folds[0]
        self.inputs = fit_fold_inputs(self.cohort, self.modalities, self.config, self.train, self.prepared)

    def model(self) -> torch.nn.Module:
        specs = encoder_specs(self.cohort, self.modalities, self.config, self.inputs)
        torch.manual_seed(0)
        return build_model(specs, self.config.fusion, 1)

    def loader(self, rows: np.ndarray):
        dataset = PatientDataset(rows, self.cohort, self.modalities, self.inputs)
        return make_loader(dataset, 32, False, 0)


@pytest.fixture(scope="module", params=["binary", "survival"])
def fold(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> _Fold:
    return _Fold(tmp_path_factory.mktemp(request.param), request.param)


def test_affine_map_reads_a_scaled_logistic_regression_exactly() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(loc=3.0, scale=[1.0, 5.0, 0.1], size=(80, 3))
    y = (x[:, 0] + rng.normal(size=80) > 3).astype(int)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=0.3)).fit(x, y)
    scaler, regression = pipeline[0], pipeline[1]
    coefficients, intercept = _affine_map(pipeline, x, 1)
    np.testing.assert_allclose(coefficients[0], regression.coef_[0] / scaler.scale_, rtol=1e-9)
    expected = regression.intercept_[0] - np.sum(regression.coef_[0] * scaler.mean_ / scaler.scale_)
    np.testing.assert_allclose(intercept[0], expected, rtol=1e-9)


def test_an_untrained_model_predicts_as_the_classical_linear_baseline(fold: _Fold, tmp_path: Path) -> None:
    model = fold.model()
    set_linear_base(model, linear_fit(fold.cohort, fold.modalities, fold.inputs, fold.train, 1, fold.config.seed))
    test = fold.splits.test
    with model.networks_off():
        mine = predict(model, fold.loader(test), torch.device("cpu")).logits[:, 0]
    linear = classical_plans(fold.config, fold.modalities, fold.cohort.task)[0]
    baseline = train_classical(linear, fold.cohort, fold.config, fold.splits, fold.prepared).folds[0]
    presence = np.stack([fold.cohort.modalities[m].present for m in fold.modalities], axis=1)
    theirs = logits(baseline.estimator, design_matrix(baseline.features, test, presence[test]), 1)[:, 0]
    # Same features, penalty grid and inner folds; only the solvers' float32/float64 rounding differs.
    assert np.corrcoef(mine, theirs)[0, 1] > 0.999
    assert np.abs(mine - theirs).max() < 0.05 * np.abs(theirs).max()
    # the marker carries the signal: its coefficient dominates the noise columns'
    weights = model.linear_terms["clinical"].weight[0].abs()
    assert int(weights.argmax()) == fold.inputs.fitted["clinical"].feature_names.index("marker")


def test_only_the_folds_training_patients_reach_the_fit(fold: _Fold) -> None:
    first = linear_fit(fold.cohort, fold.modalities, fold.inputs, fold.train, 1, 0)
    scrambled = copy.copy(fold.cohort)
    others = np.setdiff1d(np.arange(N), fold.train)
    y = fold.cohort.y.copy()
    y[others] = np.random.default_rng(1).permutation(y[others])
    scrambled.y = y
    if fold.cohort.time is not None:
        scrambled.time = fold.cohort.time.copy()
        scrambled.time[others] = scrambled.time[others][::-1]
    second = linear_fit(scrambled, fold.modalities, fold.inputs, fold.train, 1, 0)
    np.testing.assert_array_equal(second.bias, first.bias)
    for name in fold.modalities:
        np.testing.assert_array_equal(second.weights[name], first.weights[name])


def test_a_modality_no_training_patient_has_gets_a_zero_term(fold: _Fold) -> None:
    cohort = copy.copy(fold.cohort)
    cohort.modalities = dict(fold.cohort.modalities)
    genomic = copy.copy(cohort.modalities["genomic"])
    genomic.present = genomic.present.copy()
    genomic.present[fold.train] = False
    cohort.modalities["genomic"] = genomic
    fit = linear_fit(cohort, fold.modalities, fold.inputs, fold.train, 1, 0)
    assert not fit.weights["genomic"].any()
    assert fit.weights["clinical"].any()


def test_training_keeps_the_linear_fit_when_no_epoch_improves_on_it(fold: _Fold) -> None:
    model = fold.model()
    set_linear_base(model, linear_fit(fold.cohort, fold.modalities, fold.inputs, fold.train, 1, 0))
    with model.networks_off():
        before = predict(model, fold.loader(fold.val), torch.device("cpu")).logits
    with_networks = predict(model, fold.loader(fold.val), torch.device("cpu")).logits
    # the networks join the base at their learned scale (1 at the start), so epoch 0 differs from the model trained
    assert model.residual_scale.item() == 1.0 and not np.allclose(with_networks, before)
    seen: list[int] = []
    # untrained networks that drown the fit (scale 100) and steps too small to train them: every epoch predicts
    # noise, so the fold must come back as epoch 0, the base alone
    with torch.no_grad():
        model.residual_scale.fill_(100.0)
    cfg = fold.config.training.model_copy(update={"epochs": 2, "optimizer": "sgd", "lr": 1e-12})
    dataset = PatientDataset(fold.train, fold.cohort, fold.modalities, fold.inputs, True)
    time = fold.cohort.time
    result = train_fold(
        model,
        make_loader(dataset, 16, True, 0),
        fold.loader(fold.val),
        cfg,
        fold.cohort.task,
        fold.cohort.y[fold.train],
        fold.cohort.y[fold.val],
        None if time is None else time[fold.val],
        torch.device("cpu"),
        0,
        1,
        lambda epoch, metrics: seen.append(epoch),
    )
    assert seen == [0, 1, 2]
    assert result.best_epoch == 0
    assert [h["epoch"] for h in result.history] == [0.0, 1.0, 2.0]
    model.load_state_dict(result.state_dict)
    assert model.residual_scale.item() == 0.0
    np.testing.assert_allclose(predict(model, fold.loader(fold.val), torch.device("cpu")).logits, before, atol=1e-6)


def test_a_fit_that_fails_names_the_switch(fold: _Fold) -> None:
    cohort = copy.copy(fold.cohort)
    y = fold.cohort.y.copy()
    y[fold.train] = 0  # one class, or no event, among the training patients: nothing to fit
    cohort.y = y
    with pytest.raises(ClinfuseError, match=r"linear base .* fusion.linear_base: false"):
        linear_fit(cohort, fold.modalities, fold.inputs, fold.train, 1, 0)
