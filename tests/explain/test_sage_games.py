"""The SAGE value functions against the reference definitions, and their weights against real resampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss, roc_auc_score
from sksurv.metrics import concordance_index_censored

from clinfuse.explain import sage_games
from clinfuse.training.survival import cox_ph_loss

N, C, K = 80, 4, 3


@pytest.fixture
def data() -> dict[str, np.ndarray]:
    """Coalition outputs and targets with tied times, tied risks and a censored patient tied with an event."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(N, C, K)) * 1.5
    logits[:, 0] = 0.3  # the empty coalition: every patient gets the same output
    time = np.round(rng.exponential(2.0, size=N), 1)  # rounding to 0.1 leaves many tied times
    event = rng.random(N) < 0.6
    time[1], event[0], event[1] = time[0], True, False
    return {
        "logits": logits,
        "binary": (rng.random(N) < 0.4).astype(float),
        "classes": rng.integers(0, K, size=N),
        "time": time,
        "event": event.astype(float),
    }


def _ones() -> np.ndarray:
    return np.ones((1, N))


def test_losses_match_sklearn_and_training_cox(data: dict[str, np.ndarray]) -> None:
    z, y, classes = data["logits"], data["binary"], data["classes"]
    binary = sage_games.binary_log_loss(z[:, :, 0], y, _ones())[0]
    multi = sage_games.cross_entropy(z, classes, _ones())[0]
    cox = sage_games.cox_partial_nll(z[:, :, 0], data["time"], data["event"], _ones())[0]
    for c in range(C):
        prob = 1 / (1 + np.exp(-z[:, c, 0]))
        assert binary[c] == pytest.approx(log_loss(y, prob), abs=1e-12)
        soft = np.exp(z[:, c]) / np.exp(z[:, c]).sum(axis=1, keepdims=True)
        assert multi[c] == pytest.approx(log_loss(classes, soft, labels=range(K)), abs=1e-12)
        expected = cox_ph_loss(torch.tensor(z[:, c, 0]), torch.tensor(data["time"]), torch.tensor(data["event"])).item()
        assert cox[c] == pytest.approx(expected, abs=1e-12)
    # Constant risk: the partial likelihood of the null model, mean over events of log |risk set|.
    at_risk = (data["time"][None, :] >= data["time"][:, None]).sum(axis=1)
    assert cox[0] == pytest.approx(np.log(at_risk[data["event"] == 1]).mean(), abs=1e-12)


def test_metrics_match_sklearn_and_sksurv(data: dict[str, np.ndarray]) -> None:
    z, y, classes = data["logits"], data["binary"], data["classes"]
    auroc = sage_games.binary_auroc(z[:, :, 0], y, _ones())[0]
    macro = sage_games.macro_auroc(z, classes, _ones())[0]
    c_index = sage_games.harrell_c(z[:, :, 0], data["time"], data["event"], _ones())[0]
    assert auroc[0] == 0.5 and macro[0] == 0.5 and c_index[0] == 0.5
    for c in range(1, C):
        assert auroc[c] == pytest.approx(roc_auc_score(y, z[:, c, 0]), abs=1e-12)
        soft = np.exp(z[:, c]) / np.exp(z[:, c]).sum(axis=1, keepdims=True)
        assert macro[c] == pytest.approx(roc_auc_score(classes, soft, multi_class="ovr", average="macro"), abs=1e-12)
        expected = concordance_index_censored(data["event"].astype(bool), data["time"], z[:, c, 0])[0]
        assert c_index[c] == pytest.approx(expected, abs=1e-12)


def test_rounding_noise_does_not_rank_patients(data: dict[str, np.ndarray]) -> None:
    """A float64 fuse may give the empty coalition outputs that differ by ~1e-16: still all tied."""
    noisy = 0.3 + np.random.default_rng(1).normal(size=(N, 1)) * 1e-15
    assert sage_games.binary_auroc(noisy, data["binary"], _ones())[0, 0] == 0.5
    assert sage_games.harrell_c(noisy, data["time"], data["event"], _ones())[0, 0] == 0.5


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("binary_log_loss", "binary"),
        ("cross_entropy", "classes"),
        ("cox_partial_nll", "survival"),
        ("binary_auroc", "binary"),
        ("macro_auroc", "classes"),
        ("harrell_c", "survival"),
    ],
)
def test_bootstrap_weights_equal_resampled_patients(data: dict[str, np.ndarray], name: str, target: str) -> None:
    """Weight rows of draw counts must give the value on the drawn patients (duplicates included)."""
    function = getattr(sage_games, name)
    rng = np.random.default_rng(2)
    draws = rng.integers(0, N, size=(5, N))
    w = np.stack([np.bincount(d, minlength=N) for d in draws]).astype(float)
    z = data["logits"] if target == "classes" else data["logits"][:, :, 0]

    def call(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        if target == "survival":
            return function(z[rows], data["time"][rows], data["event"][rows], weights)
        return function(z[rows], data[target][rows], weights)

    weighted = call(np.arange(N), w)
    for b, rows in enumerate(draws):
        np.testing.assert_allclose(weighted[b], call(rows, np.ones((1, N)))[0], atol=1e-12, rtol=0)
    assert np.ptp(weighted[:, 1:], axis=0).max() > 1e-3  # the resamples differ, so the check has teeth


def test_undefined_resamples_are_nan(data: dict[str, np.ndarray]) -> None:
    only_censored = np.where(data["event"] == 0, 1.0, 0.0)[None]
    z = data["logits"][:, :, 0]
    assert np.isnan(sage_games.cox_partial_nll(z, data["time"], data["event"], only_censored)).all()
    assert np.isnan(sage_games.harrell_c(z, data["time"], data["event"], only_censored)).all()
    one_class = np.where(data["binary"] == 1, 1.0, 0.0)[None]
    assert np.isnan(sage_games.binary_auroc(z, data["binary"], one_class)).all()
