"""The linear base inside a multimodal model: fixed per-modality terms plus the deep part at a learned scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fusion_support import METHODS, MODALITIES, make_batch, make_specs

from clinfuse.encoders.summary import summary_features
from clinfuse.explain.modality import modality_shapley
from clinfuse.fusion import build_model
from clinfuse.fusion.linear_base import linear_features


def _model_with_terms(seed: int = 0, n_outputs: int = 1, method: str = "gated") -> torch.nn.Module:
    torch.manual_seed(seed)
    fusion = METHODS[method].model_copy(update={"linear_base": True})
    model = build_model(make_specs(), fusion, n_outputs).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for term in model.linear_terms.values():
            term.weight.copy_(torch.randn(term.weight.shape, generator=generator))
            term.center.copy_(torch.randn(term.center.shape, generator=generator))
        model.linear_bias.fill_(0.3)
    return model


def _linear_part(model: torch.nn.Module, batch: dict[str, torch.Tensor], present: torch.Tensor) -> torch.Tensor:
    """bias + sum over present modalities of W (phi(x) - mu), written out independently of the model's code."""
    total = model.linear_bias.detach().expand(len(present), -1).clone()
    for i, m in enumerate(MODALITIES):
        term = model.linear_terms[m]
        x = batch[m]
        phi = x if x.ndim == 2 else summary_features(x, (8, 8))
        total += present[:, i : i + 1] * ((phi - term.center) @ term.weight.T)
    return total


def test_linear_terms_read_the_classical_summary_of_each_input() -> None:
    model = _model_with_terms()
    # a 2D image reads 7 statistics and the 8x8 pooled grid per channel; a table its columns as they are
    assert model.linear_terms["ct"].weight.shape == (1, 7 + 64)
    assert model.linear_terms["clinical"].weight.shape == (1, 5)
    assert model.linear_terms["rna"].weight.shape == (1, 12)
    image = torch.randn(3, 1, 16, 16)
    torch.testing.assert_close(linear_features(image), summary_features(image, (8, 8)))


def test_a_fitted_base_starts_as_the_linear_model_and_an_absent_modality_adds_nothing(method: str) -> None:
    model = _model_with_terms(method=method)
    batch = make_batch(6)
    present = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=torch.bool)
    with torch.no_grad():
        model.residual_scale.zero_()
        out = model({m: batch[m] for m in MODALITIES}, present).logits
    torch.testing.assert_close(out, _linear_part(model, batch, present))
    # NaN in an absent modality's input never reaches the logits
    batch["clinical"][1] = float("nan")
    with torch.no_grad():
        again = model({m: batch[m] for m in MODALITIES}, present).logits
    torch.testing.assert_close(again, out)


def test_the_deep_part_enters_at_its_scale(method: str) -> None:
    model = _model_with_terms(method=method)
    batch = make_batch(5)
    present = torch.ones(5, 3, dtype=torch.bool)
    inputs = {m: batch[m] for m in MODALITIES}
    with torch.no_grad():
        model.residual_scale.fill_(0.5)
        embeddings = model.encode(inputs, present)
        # the encoder's embedding plus one column: the modality's linear term
        assert embeddings["ct"].shape == (5, 8 + 1)
        deep = model.head([embeddings[m][:, :-1] for m in MODALITIES], present).logits
        out = model(inputs, present).logits
    torch.testing.assert_close(out, _linear_part(model, batch, present) + 0.5 * deep)


def test_networks_off_is_the_linear_model_and_restores_the_scale() -> None:
    model = _model_with_terms()
    batch = make_batch(4)
    present = torch.ones(4, 3, dtype=torch.bool)
    with torch.no_grad():
        model.residual_scale.fill_(0.7)
        with model.networks_off():
            alone = model(batch, present).logits
        both = model(batch, present).logits
    torch.testing.assert_close(alone, _linear_part(model, batch, present))
    assert model.residual_scale.item() == pytest.approx(0.7)
    assert not torch.allclose(both, alone)


def test_an_unfitted_base_leaves_the_deep_model_unchanged(method: str) -> None:
    torch.manual_seed(3)
    plain = build_model(make_specs(), METHODS[method], 1).eval()
    torch.manual_seed(3)
    based = build_model(make_specs(), METHODS[method].model_copy(update={"linear_base": True}), 1).eval()
    batch = make_batch(4)
    present = torch.ones(4, 3, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(based(batch, present).logits, plain(batch, present).logits)
    # the plain model's weights load into the same parts of the model with a base
    extra = set(based.state_dict()) - set(plain.state_dict())
    assert extra == {"linear_bias", "residual_scale"} | {
        f"linear_terms.{m}.{p}" for m in MODALITIES for p in ("weight", "center")
    }


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_modality_shapley_of_the_linear_model_is_each_modality_term(n_outputs: int) -> None:
    model = _model_with_terms(n_outputs=n_outputs).double()
    batch = {m: x.double() for m, x in make_batch(6).items()}
    present = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=torch.bool)
    with torch.no_grad():
        model.residual_scale.zero_()
        embeddings = model.encode({m: batch[m] for m in MODALITIES}, present)
    result = modality_shapley(lambda e, p: model.fuse(e, p).logits, embeddings, present, MODALITIES, n_outputs - 1)
    for i, m in enumerate(MODALITIES):
        term = model.linear_terms[m]
        x = batch[m]
        phi = x if x.ndim == 2 else summary_features(x, (8, 8))
        expected = ((phi - term.center) @ term.weight.T)[:, n_outputs - 1].detach().numpy() * present[:, i].numpy()
        np.testing.assert_allclose(result.phi[:, i], expected, atol=1e-9)
