"""Tabular encoders: the clinical MLP and the genomic self-normalising network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from clinfuse.encoders import create_encoder, encoder_accepts, encoder_kind
from clinfuse.encoders.tabular import MaskedLinear, MLPEncoder, SNNEncoder
from clinfuse.errors import ConfigError


@pytest.mark.parametrize("hidden", [[], [16], [16, 8]])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_mlp_shapes_and_gradients(hidden: list[int], activation: str) -> None:
    encoder = create_encoder("mlp", in_features=7, embed_dim=5, hidden=hidden, dropout=0.2, activation=activation)
    assert isinstance(encoder, MLPEncoder) and encoder.embed_dim == 5
    out = encoder(torch.randn(4, 7))
    assert out.shape == (4, 5)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.net[0].parameters())
    assert sum(isinstance(m, nn.Linear) for m in encoder.modules()) == len(hidden) + 1


def test_mlp_unknown_activation() -> None:
    with pytest.raises(ConfigError, match="activation 'tanh'"):
        create_encoder("mlp", in_features=3, activation="tanh")


def test_snn_is_self_normalising() -> None:
    torch.manual_seed(0)
    encoder = create_encoder("snn", in_features=200, embed_dim=8, hidden=[256, 256, 256], dropout=0.3).eval()
    assert isinstance(encoder, SNNEncoder)
    assert any(isinstance(m, nn.AlphaDropout) for m in encoder.modules())
    assert sum(isinstance(m, nn.SELU) for m in encoder.modules()) == 3
    first = encoder.net[0]
    # LeCun normal: std = 1/sqrt(fan_in).
    assert first.weight.std().item() == pytest.approx(1 / np.sqrt(200), rel=0.05)
    hidden = encoder.net[:-1](torch.randn(4000, 200))
    assert abs(hidden.mean().item()) < 0.1
    assert hidden.std().item() == pytest.approx(1.0, abs=0.15)


def test_snn_gene_mask_limits_each_unit_to_its_group() -> None:
    torch.manual_seed(0)
    mask = np.zeros((6, 3), dtype=int)
    mask[[0, 1], 0] = 1
    mask[[2, 3], 1] = 1
    mask[[3, 4, 5], 2] = 1  # gene 3 is in two groups
    assert encoder_accepts("snn", "gene_mask") and not encoder_accepts("mlp", "gene_mask")
    encoder = create_encoder("snn", in_features=6, embed_dim=4, hidden=[7, 5], gene_mask=mask)
    first = encoder.net[0]
    assert isinstance(first, MaskedLinear)
    assert first.weight.shape == (6, 6)  # 7 // 3 = 2 units per group
    x = torch.randn(3, 6)
    units = first(x)
    changed = x.clone()
    changed[:, 5] += 10.0  # gene 5 belongs to group 2 only: units 4-5
    delta = (first(changed) - units).abs().amax(dim=0)
    assert torch.all(delta[:4] == 0) and torch.all(delta[4:] > 0)
    encoder(x).sum().backward()
    # Masked weights never receive gradient, so the mask survives training.
    assert torch.all(first.weight.grad[first.mask == 0] == 0)
    assert encoder(x).shape == (3, 4)


@pytest.mark.parametrize(
    ("mask", "message"),
    [(np.ones((5, 2)), r"shape \(5, 2\), expected \(6, n_groups\)"), (np.full((6, 2), 0.5), "only 0 and 1")],
)
def test_snn_bad_gene_mask(mask: np.ndarray, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_encoder("snn", in_features=6, hidden=[4], gene_mask=mask)


def test_snn_gene_mask_needs_a_hidden_layer() -> None:
    with pytest.raises(ConfigError, match="hidden"):
        create_encoder("snn", in_features=6, hidden=[], gene_mask=np.ones((6, 2)))


def test_tabular_kinds() -> None:
    assert encoder_kind("mlp") == encoder_kind("snn") == "vector"
