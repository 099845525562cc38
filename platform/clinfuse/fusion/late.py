"""Late fusion baseline: one head per modality, logits combined by a mean or learned softmax weights.

An absent modality goes through its head with its learned missing embedding, like any other, so the
"absent" path is the same one Shapley explanations use.
"""

from __future__ import annotations

import torch
from torch import nn

from clinfuse.config import FusionConfig
from clinfuse.fusion.registry import FusionOutput, mlp_head, register_fusion


@register_fusion("late")
class LateFusion(nn.Module):
    """Per-modality heads whose logits are averaged (``mean``) or weighted by learned softmax weights.

    Args:
        embed_dims: embedding size of each modality, in modality order.
        n_outputs: logits per patient.
        config: ``hidden`` and ``dropout`` of each head, ``late_combine`` (``mean`` or ``learned``).
    """

    def __init__(self, embed_dims: list[int], n_outputs: int, config: FusionConfig) -> None:
        super().__init__()
        self.heads = nn.ModuleList(mlp_head(d, config.hidden, n_outputs, config.dropout) for d in embed_dims)
        # Zeros give equal weights, so "learned" starts from "mean"; "mean" keeps them fixed as a buffer.
        logits = torch.zeros(len(embed_dims))
        if config.late_combine == "learned":
            self.weight_logits = nn.Parameter(logits)
        else:
            self.register_buffer("weight_logits", logits)

    @property
    def weights(self) -> torch.Tensor:
        """Combination weights ``(M,)`` (uniform for ``mean``)."""
        return torch.softmax(self.weight_logits, dim=0)

    def forward(self, embeddings: list[torch.Tensor], present: torch.Tensor) -> FusionOutput:
        """Fuse filled embeddings ``[(B, D_m)]`` into logits ``(B, n_outputs)``."""
        logits = torch.stack([head(e) for head, e in zip(self.heads, embeddings, strict=True)], dim=0)
        return FusionOutput((self.weights.view(-1, 1, 1) * logits).sum(dim=0))
