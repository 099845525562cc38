"""Toy multimodal models following the MultimodalModel contract (encode / fuse -> FusionOutput)."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from torch import Tensor, nn


class ToyOutput(NamedTuple):
    logits: Tensor
    gates: Tensor | None


class ToyFusion(nn.Module):
    """Linear encoders, learned missing embeddings, sigmoid gates and a nonlinear head over the concatenation.

    Args:
        in_dims: input width per modality (also fixes the modality order).
        embed_dim: embedding size.
        n_outputs: logits.
        ignore: modalities left out of the head entirely (the model ignores them).
        seed: initialisation seed.
        encoders: optional encoder modules replacing the default Linear of some modalities.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        embed_dim: int = 4,
        n_outputs: int = 1,
        ignore: tuple[str, ...] = (),
        seed: int = 0,
        encoders: dict[str, nn.Module] | None = None,
    ) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.modalities = list(in_dims)
        self.used = [m for m in self.modalities if m not in ignore]
        given = encoders or {}
        self.encoders = nn.ModuleDict(
            {m: given[m] if m in given else nn.Linear(d, embed_dim) for m, d in in_dims.items()}
        )
        self.missing = nn.ParameterDict({m: nn.Parameter(torch.randn(embed_dim)) for m in self.modalities})
        width = embed_dim * len(self.used)
        self.gate = nn.Linear(width, len(self.modalities))
        self.head = nn.Sequential(nn.Linear(width, 16), nn.Tanh(), nn.Linear(16, n_outputs))

    def encode(self, inputs: dict[str, Tensor], present: Tensor) -> dict[str, Tensor]:
        out = {}
        for k, m in enumerate(self.modalities):
            emb = torch.zeros(present.shape[0], self.missing[m].shape[0], dtype=self.missing[m].dtype)
            rows = present[:, k]
            if rows.any():
                emb[rows] = self.encoders[m](inputs[m][rows])
            out[m] = emb
        return out

    def _filled(self, embeddings: dict[str, Tensor], present: Tensor) -> list[Tensor]:
        return [
            torch.where(present[:, self.modalities.index(m), None], embeddings[m], self.missing[m]) for m in self.used
        ]

    def fuse(self, embeddings: dict[str, Tensor], present: Tensor) -> ToyOutput:
        joined = torch.cat(self._filled(embeddings, present), dim=1)
        gates = torch.sigmoid(self.gate(joined))
        scale = torch.cat(
            [
                gates[:, [self.modalities.index(m)]].expand(-1, e.shape[1])
                for m, e in zip(self.used, self._filled(embeddings, present), strict=True)
            ],
            dim=1,
        )
        return ToyOutput(self.head(joined * scale), gates)

    def forward(self, inputs: dict[str, Tensor], present: Tensor) -> ToyOutput:
        return self.fuse(self.encode(inputs, present), present)


class AdditiveToy(ToyFusion):
    """logit = sum_m g_m(e_m), with a missing modality contributing g_m(missing_m)."""

    def __init__(self, in_dims: dict[str, int], embed_dim: int = 4, seed: int = 0) -> None:
        super().__init__(in_dims, embed_dim, seed=seed)
        self.parts = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(embed_dim, 8), nn.Tanh(), nn.Linear(8, 1)) for m in in_dims}
        )

    def part(self, m: str, emb: Tensor) -> Tensor:
        return self.parts[m](emb)[:, 0]

    def fuse(self, embeddings: dict[str, Tensor], present: Tensor) -> ToyOutput:
        filled = self._filled(embeddings, present)
        logit = sum(self.part(m, e) for m, e in zip(self.modalities, filled, strict=True))
        return ToyOutput(logit[:, None], None)


def random_batch(
    in_dims: dict[str, int], n: int, seed: int = 0, p_absent: float = 0.3
) -> tuple[dict[str, Tensor], Tensor]:
    """Random inputs and presence (some patients lack modalities; one row lacks all of them)."""
    generator = torch.Generator().manual_seed(seed)
    inputs = {m: torch.randn(n, d, generator=generator) for m, d in in_dims.items()}
    present = torch.rand(n, len(in_dims), generator=generator) > p_absent
    present[0] = True
    present[1] = False
    return inputs, present


@pytest.fixture
def toy_fusion() -> type[ToyFusion]:
    return ToyFusion


@pytest.fixture
def additive_toy() -> type[AdditiveToy]:
    return AdditiveToy


@pytest.fixture
def make_batch():
    return random_batch
