"""Gated fusion (Pathomic Fusion, Chen et al. 2020): per-modality gates weigh each embedding.

For each modality m: ``h_m = ReLU(Linear(e_m))`` (or ``h_m = e_m`` without ``project``) and a gate
``z_m = sigmoid(Linear([e_1..e_M]))_m`` (one scalar per modality and patient, computed from all modalities so
one can down-weigh another). The gated embeddings ``z_m * h_m`` are concatenated, or, with ``kronecker``,
combined by the Kronecker product of the 1-augmented vectors (every unimodal, bimodal, ... interaction term),
then fed to an MLP head.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from clinfuse.config import FusionConfig
from clinfuse.fusion.registry import FusionOutput, mlp_head, register_fusion

# Keeps the Kronecker feature vector, prod(k_m + 1), at most this long.
_KRONECKER_MAX_FEATURES = 4096
_KRONECKER_MAX_WIDTH = 16


@register_fusion("gated")
class GatedFusion(nn.Module):
    """Gated attention fusion with an optional Kronecker product.

    Args:
        embed_dims: embedding size of each modality, in modality order.
        n_outputs: logits per patient.
        config: ``hidden`` and ``dropout`` of the head, ``kronecker`` to fuse by outer products, ``project``
            each embedding before its gate, the gates' value at initialisation (``gate_init``), ``skip``.
    """

    def __init__(self, embed_dims: list[int], n_outputs: int, config: FusionConfig) -> None:
        super().__init__()
        self.kronecker = config.kronecker
        widths = [_kronecker_width(len(embed_dims))] * len(embed_dims) if self.kronecker else list(embed_dims)
        # The Kronecker product needs every modality projected to its small width.
        project = config.project or self.kronecker
        self.transforms = nn.ModuleList(
            nn.Sequential(nn.Linear(d, w), nn.ReLU()) if project else nn.Identity()
            for d, w in zip(embed_dims, widths, strict=True)
        )
        self.gate = nn.Sequential(nn.Linear(sum(embed_dims), len(embed_dims)), nn.Sigmoid())
        nn.init.constant_(self.gate[0].bias, math.log(config.gate_init / (1.0 - config.gate_init)))
        self.dropout = nn.Dropout(config.dropout)
        fused = math.prod(w + 1 for w in widths) if self.kronecker else sum(widths)
        self.head = mlp_head(fused, config.hidden, n_outputs, config.dropout)
        # Pathomic Fusion's skip connection, as a gated linear read-out of each raw embedding: an additive
        # path the optimiser finds first on small cohorts, with the MLP head left for interactions.
        self.skip = nn.ModuleList(nn.Linear(d, n_outputs, bias=False) for d in embed_dims) if config.skip else None

    def forward(self, embeddings: list[torch.Tensor], present: torch.Tensor) -> FusionOutput:
        """Fuse filled embeddings ``[(B, D_m)]``; returns logits and gates ``(B, M)`` in [0, 1]."""
        gates = self.gate(torch.cat(embeddings, dim=1))
        gated = [gates[:, i : i + 1] * t(e) for i, (t, e) in enumerate(zip(self.transforms, embeddings, strict=True))]
        fused = _kronecker(gated) if self.kronecker else torch.cat(gated, dim=1)
        logits = self.head(self.dropout(fused))
        if self.skip is not None:
            for i, (read_out, e) in enumerate(zip(self.skip, embeddings, strict=True)):
                logits = logits + gates[:, i : i + 1] * read_out(e)
        return FusionOutput(logits, gates)


def _kronecker_width(n_modalities: int) -> int:
    """Width each modality is projected to before the Kronecker product."""
    width = _KRONECKER_MAX_WIDTH
    while width > 1 and (width + 1) ** n_modalities > _KRONECKER_MAX_FEATURES:
        width -= 1
    return width


def _kronecker(vectors: list[torch.Tensor]) -> torch.Tensor:
    """Row-wise Kronecker product of 1-augmented vectors: ``(B, prod(d_m + 1))``."""
    fused = None
    for v in vectors:
        augmented = torch.cat([v.new_ones(v.shape[0], 1), v], dim=1)
        fused = augmented if fused is None else (fused.unsqueeze(2) * augmented.unsqueeze(1)).flatten(1)
    return fused
