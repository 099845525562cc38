"""Batched Shapley estimators against independent computations: brute-force orders, shap's own explainers."""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest
import shap
import torch

from clinfuse.explain.batched_shap import PatientsLogit, exact_shapley, expected_gradients, permutation_shapley
from clinfuse.explain.features import ModalityLogit


def _setup(toy_fusion, make_batch, seed: int, n: int = 5, clinical: int = 4):
    dims = {"clinical": clinical, "genomic": 3}
    model = toy_fusion(dims, seed=seed).eval()
    inputs, present = make_batch(dims, n, seed=seed + 1, p_absent=0.0)
    present[1] = True
    with torch.no_grad():
        embeddings = model.encode(inputs, present)
    background = torch.randn(7, clinical, generator=torch.Generator().manual_seed(seed + 2))
    return model, inputs, present, embeddings, background


def _game(model, embeddings, present, p, x, background, keep):
    """v_p(S) straight from the model: patient p's logit averaged over background rows outside S."""
    head = ModalityLogit(model, "clinical", {m: e[p : p + 1] for m, e in embeddings.items()}, present[p : p + 1])
    rows = torch.where(torch.as_tensor(keep), x[p], background)
    with torch.no_grad():
        return float(head(rows).double().mean())


def test_exact_equals_the_shapley_average_over_every_column_order(toy_fusion, make_batch):
    model, inputs, present, embeddings, background = _setup(toy_fusion, make_batch, 3)
    x = inputs["clinical"]
    head = PatientsLogit(model, "clinical", embeddings, present, 0)
    phi, base, f_x = exact_shapley(head, x, background)
    for p in (0, 3):
        expected = np.zeros(4)
        for order in permutations(range(4)):
            keep = np.zeros(4, bool)
            before = _game(model, embeddings, present, p, x, background, keep)
            for column in order:
                keep[column] = True
                after = _game(model, embeddings, present, p, x, background, keep)
                expected[column] += after - before
                before = after
        np.testing.assert_allclose(phi[p], expected / 24, atol=1e-6)
        assert base[p] == pytest.approx(_game(model, embeddings, present, p, x, background, np.zeros(4, bool)))
        assert f_x[p] == pytest.approx(_game(model, embeddings, present, p, x, background, np.ones(4, bool)))
    assert np.abs(phi).max() > 1e-3


def test_permutation_is_efficient_gives_an_ignored_column_zero_and_approaches_exact(toy_fusion, make_batch):
    model, inputs, present, embeddings, background = _setup(toy_fusion, make_batch, 5, clinical=6)
    with torch.no_grad():
        model.encoders["clinical"].weight[:, 2] = 0.0  # column 2 is ignored by the model
    head = PatientsLogit(model, "clinical", embeddings, present, 0)
    x = inputs["clinical"]
    few, base, f_x = permutation_shapley(head, x, background, max_evals=13, seed=0)  # one antithetic pair
    np.testing.assert_allclose(few.sum(1), f_x - base, atol=1e-6)
    assert np.abs(few[:, 2]).max() < 1e-7  # float32 rounding of the other rows, not a share of the output
    exact, _, _ = exact_shapley(head, x, background)
    many, _, _ = permutation_shapley(head, x, background, max_evals=13 * 400, seed=1)
    assert np.abs(many - exact).max() < 0.05 * np.abs(exact).max()


def test_expected_gradients_match_shap_gradient_explainer(toy_fusion, make_batch):
    # The same estimator with different random draws: compared on many samples.
    model, inputs, present, embeddings, background = _setup(toy_fusion, make_batch, 7, n=3)
    x = inputs["clinical"]
    head = PatientsLogit(model, "clinical", embeddings, present, 0)
    phi, base, f_x = expected_gradients(head, x, background, nsamples=4000, seed=0)
    np.testing.assert_allclose(phi.sum(1), f_x - base, atol=0.02)
    for p in range(3):
        one = ModalityLogit(model, "clinical", {m: e[p : p + 1] for m, e in embeddings.items()}, present[p : p + 1])
        reference = shap.GradientExplainer(one, background).shap_values(x[p : p + 1], nsamples=4000, rseed=p)
        np.testing.assert_allclose(phi[p], np.asarray(reference).reshape(-1)[:4], atol=0.03)
