"""Builders of a tiny three-modality model (2D image + clinical MLP + genomic SNN) for every fusion method.

A module of its own (not conftest) so tests can import it unambiguously.
"""

from __future__ import annotations

import torch

from clinfuse.config import EncoderConfig, FusionConfig
from clinfuse.fusion import ModalitySpec, MultimodalModel, build_model

MODALITIES = ["ct", "clinical", "rna"]
METHODS = {
    "gated": FusionConfig(method="gated", hidden=16),
    "gated_kronecker": FusionConfig(method="gated", hidden=16, kronecker=True),
    "concat": FusionConfig(method="concat", hidden=16),
    "late_mean": FusionConfig(method="late", hidden=16, late_combine="mean"),
    "late_learned": FusionConfig(method="late", hidden=16, late_combine="learned"),
    "attention": FusionConfig(method="attention", hidden=16, attention_heads=2, attention_layers=1),
}


def make_specs() -> dict[str, ModalitySpec]:
    """Modality specs in presence-column order."""
    return {
        "ct": ModalitySpec(
            type="image",
            encoder=EncoderConfig(embed_dim=8),
            spatial_dims=2,
            in_channels=1,
            image_size=[16, 16],
        ),
        "clinical": ModalitySpec(type="tabular", encoder=EncoderConfig(embed_dim=6, hidden=[8]), in_features=5),
        "rna": ModalitySpec(type="genomic", encoder=EncoderConfig(embed_dim=4, hidden=[8]), in_features=12),
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
