"""Builders of a tiny three-modality model (2D image + clinical MLP + genomic SNN) for every fusion method.

A module of its own (not conftest) so tests can import it unambiguously.
"""

from __future__ import annotations

from typing import Any

import torch

from clinfuse.config import EncoderConfig, FusionConfig
from clinfuse.encoders import EncoderSpec
from clinfuse.fusion import MultimodalModel, build_model
from clinfuse.kinds import get_kind

MODALITIES = ["ct", "clinical", "rna"]
# The heads alone: tests/fusion/test_linear_terms.py adds the linear base to each of them.
METHODS = {
    "gated": FusionConfig(method="gated", hidden=16, linear_base=False),
    "gated_kronecker": FusionConfig(method="gated", hidden=16, linear_base=False, kronecker=True),
    "concat": FusionConfig(method="concat", hidden=16, linear_base=False),
    "late_mean": FusionConfig(method="late", hidden=16, linear_base=False, late_combine="mean"),
    "late_learned": FusionConfig(method="late", hidden=16, linear_base=False, late_combine="learned"),
    "attention": FusionConfig(method="attention", hidden=16, linear_base=False, attention_heads=2, attention_layers=1),
}


def spec_for(kind: str, modality: str, config: EncoderConfig, **inputs: Any) -> EncoderSpec:
    """The encoder a registered kind chooses for ``modality`` given its fitted input shape."""

    class _Input:
        input_shape = inputs

    return get_kind(kind).encoder(modality, config, _Input())  # type: ignore[arg-type]


ENCODERS = {
    "ct": EncoderConfig(embed_dim=8),
    "clinical": EncoderConfig(embed_dim=6, hidden=[8]),
    "rna": EncoderConfig(embed_dim=4, hidden=[8]),
}


def make_specs(encoders: dict[str, EncoderConfig] | None = None, gene_mask: Any = None) -> dict[str, EncoderSpec]:
    """Encoder specs in presence-column order, as the image, tabular and genomic kinds choose them."""
    cfg = ENCODERS | (encoders or {})
    return {
        "ct": spec_for("image", "ct", cfg["ct"], spatial_dims=2, in_channels=1, size=[16, 16]),
        "clinical": spec_for("tabular", "clinical", cfg["clinical"], in_features=5),
        "rna": spec_for("genomic", "rna", cfg["rna"], in_features=12, gene_mask=gene_mask),
    }


def make_model(method: str, n_outputs: int = 1, seed: int = 0) -> MultimodalModel:
    torch.manual_seed(seed)
    return build_model(make_specs(), METHODS[method], n_outputs)


def make_batch(batch: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "ct": torch.randn(batch, 1, 16, 16, generator=generator),
        "clinical": torch.randn(batch, 5, generator=generator),
        "rna": torch.randn(batch, 12, generator=generator),
    }


def mixed_presence() -> torch.Tensor:
    """Six patients: every modality present in at least two rows and absent in at least one."""
    return torch.tensor([[1, 1, 1], [1, 1, 1], [1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 1, 0]], dtype=torch.bool)
