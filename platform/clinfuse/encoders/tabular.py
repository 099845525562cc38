"""Tabular encoders: an MLP for clinical features and a self-normalising network for genomics.

Both take preprocessed features ``(batch, in_features)`` and return ``(batch, embed_dim)``.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clinfuse.encoders.registry import register_encoder
from clinfuse.errors import ConfigError

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU}


class MLPEncoder(nn.Module):
    """Clinical-feature MLP: ``[Linear → LayerNorm → activation → Dropout] × len(hidden) → Linear``.

    Args:
        in_features: number of preprocessed input features.
        embed_dim: size of the embedding handed to fusion.
        hidden: widths of the hidden layers (may be empty: a single linear map).
        dropout: dropout rate after each hidden layer.
        activation: ``relu`` or ``gelu``.
        layer_norm: normalise each hidden layer (stable with the small batches of clinical cohorts).
        linear_skip: add ``Linear(x)`` to the embedding (wide and deep): on small cohorts the network then
            fits linear effects without routing them through the hidden layers.
    """

    def __init__(
        self,
        in_features: int,
        embed_dim: int,
        hidden: list[int],
        dropout: float = 0.0,
        activation: Literal["relu", "gelu"] = "relu",
        layer_norm: bool = True,
        linear_skip: bool = False,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ConfigError(f"unknown activation {activation!r}; choose one of: {', '.join(_ACTIVATIONS)}")
        self.embed_dim = embed_dim
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LayerNorm(h) if layer_norm else nn.Identity()]
            layers += [_ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, embed_dim))
        self.net = nn.Sequential(*layers)
        self.skip = nn.Linear(in_features, embed_dim) if linear_skip else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed features ``(batch, in_features)`` into ``(batch, embed_dim)``."""
        out = self.net(x)
        return out if self.skip is None else out + self.skip(x)


class MaskedLinear(nn.Linear):
    """A linear layer whose weights are multiplied by a fixed 0/1 mask ``(out_features, in_features)``.

    Masked weights get zero gradient, so each output unit only ever sees its allowed inputs.
    """

    def __init__(self, mask: torch.Tensor) -> None:
        out_features, in_features = mask.shape
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.float())
        with torch.no_grad():
            # LeCun normal over each unit's real fan-in keeps SELU activations self-normalising.
            fan_in = self.mask.sum(dim=1, keepdim=True).clamp(min=1.0)
            self.weight.normal_().mul_(fan_in.rsqrt()).mul_(self.mask)
            self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class SNNEncoder(nn.Module):
    """Self-normalising network for genomic features (as in Pathomic Fusion).

    ``[Linear → SELU → AlphaDropout] × len(hidden) → Linear``, LeCun-normal initialisation. With a gene-group
    mask the first layer gives each group ``max(1, hidden[0] // n_groups)`` units that see only its genes.

    Args:
        in_features: number of genes (preprocessed features).
        embed_dim: size of the embedding handed to fusion.
        hidden: widths of the hidden layers (at least one when ``gene_mask`` is given).
        dropout: AlphaDropout rate.
        gene_mask: optional 0/1 array ``(in_features, n_groups)``: gene i belongs to group g.
        linear_skip: add ``Linear(x)`` over every gene to the embedding (see :class:`MLPEncoder`).
    """

    def __init__(
        self,
        in_features: int,
        embed_dim: int,
        hidden: list[int],
        dropout: float = 0.0,
        gene_mask: np.ndarray | None = None,
        linear_skip: bool = False,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        layers: list[nn.Module] = []
        widths = list(hidden)
        if gene_mask is not None:
            if not widths:
                raise ConfigError("gene_groups needs at least one hidden layer; set encoders.<modality>.hidden")
            first = _group_mask(gene_mask, in_features, widths[0])
            widths[0] = first.shape[0]
            layers += [MaskedLinear(first), nn.SELU(), nn.AlphaDropout(dropout)]
        width = in_features if gene_mask is None else widths[0]
        for h in widths[1:] if gene_mask is not None else widths:
            layers += [_lecun_linear(width, h), nn.SELU(), nn.AlphaDropout(dropout)]
            width = h
        layers.append(_lecun_linear(width, embed_dim))
        self.net = nn.Sequential(*layers)
        self.skip = nn.Linear(in_features, embed_dim) if linear_skip else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed genomic features ``(batch, in_features)`` into ``(batch, embed_dim)``."""
        out = self.net(x)
        return out if self.skip is None else out + self.skip(x)


def _lecun_linear(in_features: int, out_features: int) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
    nn.init.normal_(layer.weight, std=1.0 / math.sqrt(in_features))
    nn.init.zeros_(layer.bias)
    return layer


def _group_mask(gene_mask: np.ndarray, in_features: int, width: int) -> torch.Tensor:
    """Expand a gene→group mask ``(genes, groups)`` to first-layer weights ``(units, genes)``."""
    mask = np.asarray(gene_mask)
    if mask.ndim != 2 or mask.shape[0] != in_features:
        raise ConfigError(
            f"gene group mask has shape {mask.shape}, expected ({in_features}, n_groups) for {in_features} "
            "genes; check encoders.<modality>.gene_groups"
        )
    if not np.isin(mask, (0, 1)).all():
        raise ConfigError("gene group mask must hold only 0 and 1; check encoders.<modality>.gene_groups")
    per_group = max(1, width // mask.shape[1])
    groups = torch.as_tensor(mask.T, dtype=torch.float32)
    return groups.repeat_interleave(per_group, dim=0)


@register_encoder("mlp", kind="vector")
def mlp(
    in_features: int,
    embed_dim: int = 32,
    hidden: list[int] | None = None,
    dropout: float = 0.0,
    activation: Literal["relu", "gelu"] = "relu",
    layer_norm: bool = True,
    linear_skip: bool = False,
) -> nn.Module:
    """Clinical MLP encoder (see :class:`MLPEncoder`)."""
    width = [64] if hidden is None else hidden
    return MLPEncoder(in_features, embed_dim, width, dropout, activation, layer_norm, linear_skip)


@register_encoder("snn", kind="vector")
def snn(
    in_features: int,
    embed_dim: int = 32,
    hidden: list[int] | None = None,
    dropout: float = 0.0,
    gene_mask: np.ndarray | None = None,
    linear_skip: bool = False,
) -> nn.Module:
    """Genomic self-normalising network (see :class:`SNNEncoder`)."""
    return SNNEncoder(in_features, embed_dim, [64] if hidden is None else hidden, dropout, gene_mask, linear_skip)
