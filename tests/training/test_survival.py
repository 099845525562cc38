"""The Cox loss equals a direct partial-likelihood computation; the survival metrics equal scikit-survival's.

The metrics are checked against scikit-survival on cohorts with tied times, tied risks and censoring; patient
weights must count like repeated patients (that is what the bootstrap relies on); memory must stay linear.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from clinfuse.training.survival import IBS_POINTS, SurvivalScorer, cox_ph_loss, survival_metrics

METRICS = ("c_index", "uno_c", "td_auc", "ibs")


def _reference(risk: np.ndarray, time: np.ndarray, event: np.ndarray) -> float:
    """O(n^2) Breslow partial likelihood: risk set of i is every j with t_j >= t_i."""
    total = 0.0
    for i in np.flatnonzero(event):
        at_risk = time >= time[i]
        total += risk[i] - np.log(np.exp(risk[at_risk]).sum())
    return -total / event.sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cox_loss_matches_reference_with_ties(seed):
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=40)
    time = rng.integers(1, 8, 40).astype(float)  # many tied times
    event = (rng.random(40) < 0.5).astype(float)
    loss = cox_ph_loss(torch.tensor(risk), torch.tensor(time), torch.tensor(event))
    assert loss.item() == pytest.approx(_reference(risk, time, event), rel=1e-10)


def test_cox_loss_is_stable_and_differentiable():
    risk = torch.tensor([500.0, -500.0, 300.0, 0.0], requires_grad=True)
    loss = cox_ph_loss(risk, torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1, 1, 0, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(risk.grad).all()
    # The gradient of a sum of log-softmax terms sums to zero over the batch.
    assert risk.grad.sum().item() == pytest.approx(0.0, abs=1e-4)


def test_cox_loss_prefers_correct_ordering():
    time = torch.tensor([1.0, 2.0, 3.0, 4.0])
    event = torch.ones(4)
    good = cox_ph_loss(torch.tensor([3.0, 2.0, 1.0, 0.0]), time, event)
    bad = cox_ph_loss(torch.tensor([0.0, 1.0, 2.0, 3.0]), time, event)
    assert good < bad


def test_no_events_gives_zero_with_grad():
    risk = torch.randn(5, 1, requires_grad=True)
    loss = cox_ph_loss(risk, torch.arange(5.0), torch.zeros(5))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(risk.grad, torch.zeros_like(risk))


def _cohort(seed: int, n: int = 150) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    true_risk = rng.normal(size=n)
    time = np.ceil(rng.exponential(np.exp(-true_risk)) * 10)  # integer times: many ties
    event = rng.random(n) < 0.65
    last = np.argmax(time)
    event[last], time[last] = True, time[last] + 1  # censoring survival stays positive, as sksurv requires
    risk = np.round(true_risk + rng.normal(scale=0.5, size=n), 1)  # rounded: many tied risks
    risk[:5] = risk[5:10] + 3e-9  # tied within the tolerance only
    return time, event, risk


def _sksurv(time: np.ndarray, event: np.ndarray, risk: np.ndarray, horizon: float) -> dict[str, float]:
    metrics = pytest.importorskip("sksurv.metrics")
    breslow = pytest.importorskip("sksurv.linear_model.coxph").BreslowEstimator
    y = np.array(list(zip(event, time, strict=True)), dtype=[("event", bool), ("time", float)])
    grid = np.linspace(time.min(), horizon, IBS_POINTS)
    curves = breslow().fit(risk, event, time).get_survival_function(risk)
    return {
        "c_index": metrics.concordance_index_censored(event, time, risk)[0],
        "uno_c": metrics.concordance_index_ipcw(y, y, risk, tau=horizon)[0],
        "td_auc": metrics.cumulative_dynamic_auc(y, y, risk, [horizon])[0][0],
        "ibs": metrics.integrated_brier_score(y, y, np.stack([curve(grid) for curve in curves]), grid),
    }


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_metrics_match_sksurv(seed):
    time, event, risk = _cohort(seed)
    ours = survival_metrics(time, event, risk)
    assert ours["horizon"] == np.median(time)
    expected = _sksurv(time, event, risk, ours["horizon"])
    for name in METRICS:
        assert ours[name] == pytest.approx(expected[name], abs=1e-9), name
    # A later horizon moves every time-dependent metric; the C-index stays.
    later = survival_metrics(time, event, risk, horizons=[np.quantile(time, 0.8)])
    expected = _sksurv(time, event, risk, later["horizon"])
    for name in METRICS:
        assert later[name] == pytest.approx(expected[name], abs=1e-9), name
    assert later["uno_c"] != pytest.approx(ours["uno_c"]) and later["ibs"] != pytest.approx(ours["ibs"])


def test_weights_count_like_repeated_patients():
    time, event, risk = _cohort(4)
    counts = np.random.default_rng(5).integers(0, 4, size=(3, len(time)))
    counts[:, np.argmin(time)] = 1  # the IBS grid starts at the first time of the full cohort
    horizon = float(np.median(time))
    weighted = SurvivalScorer(time, event, risk, horizon)(counts)
    for row, count in enumerate(counts):
        idx = np.repeat(np.arange(len(time)), count)
        repeated = survival_metrics(time[idx], event[idx], risk[idx], horizons=[horizon])
        for name in METRICS:
            assert weighted[name][row] == pytest.approx(repeated[name], abs=1e-12), name


def test_perfect_and_reversed_risks():
    time = np.arange(1.0, 11.0)
    event = np.array([1, 1, 0, 1, 1, 0, 1, 1, 0, 1], dtype=bool)
    perfect = survival_metrics(time, event, -time)
    reversed_ = survival_metrics(time, event, time)
    for name in ("c_index", "uno_c", "td_auc"):
        assert perfect[name] == 1.0 and reversed_[name] == 0.0, name
    assert perfect["ibs"] < reversed_["ibs"]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize(
    ("time", "event", "horizons", "defined"),
    [
        ([], [], None, ()),
        ([3.0], [1], None, ()),
        ([1.0, 2.0, 3.0], [0, 0, 0], None, ()),
        ([2.0, 2.0, 2.0], [1, 1, 1], None, ()),  # one time: no comparable pair, no interval to integrate
        ([1.0, 2.0, 3.0, 4.0], [1, 0, 1, 0], [0.5], ("c_index",)),  # horizon before every time
        # The censoring survival is 0 at the event at t = 3: Uno's weight would be infinite.
        ([1.0, 2.0, 3.0, 3.0], [1, 0, 1, 0], [5.0], ("c_index", "ibs")),
    ],
)
def test_undefined_metrics_are_nan(time, event, horizons, defined):
    risk = np.linspace(0.0, 1.0, len(time))
    result = survival_metrics(np.array(time), np.array(event), risk, horizons=horizons)
    for name in METRICS:
        assert np.isfinite(result[name]) == (name in defined), name


@pytest.mark.filterwarnings("error")
def test_non_finite_inputs_give_nan():
    """A diverged model's NaN risk makes every metric undefined rather than quietly mis-ranked."""
    time, event, risk = _cohort(5, n=40)
    risk[3] = np.nan
    assert all(np.isnan(survival_metrics(time, event, risk)[name]) for name in METRICS)
    time[3], risk[3] = np.inf, 0.0
    assert all(np.isnan(survival_metrics(time, event, risk)[name]) for name in METRICS)


def test_memory_stays_linear():
    time, event, risk = _cohort(6, n=20_000)
    tracemalloc.start()
    try:
        result = survival_metrics(time, event, risk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert 0.5 < result["c_index"] < 1.0
    # The n x n pair matrix alone would be 3.2 GB; the sorted index and a few (n,) arrays are a few MB.
    assert peak < 30e6
