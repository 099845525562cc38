"""The Cox loss equals a direct partial-likelihood computation, ties included, and has finite gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clinfuse.training.survival import cox_ph_loss


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
