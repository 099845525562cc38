"""The multimodal model: per-modality encoders, learned "missing" embeddings and a fusion head.

``encode`` runs each encoder only on the rows where its modality is present; ``fuse`` substitutes the learned
missing embedding for absent rows and applies the fusion method. The split lets explanations call the cheap
``fuse`` over every coalition of modalities (``present = coalition & actual presence``) without re-encoding.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from clinfuse.config import FusionConfig
from clinfuse.encoders import EncoderSpec, create_encoder, load_weights
from clinfuse.errors import ConfigError
from clinfuse.fusion.linear_base import LinearTerm, linear_width
from clinfuse.fusion.registry import FusionOutput, create_fusion

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class MultimodalModel(nn.Module):
    """Encoders, missing embeddings and a fusion head behind the ``encode``/``fuse`` interface.

    Args:
        encoders: one encoder per modality (each with ``.embed_dim``), in presence-column order.
        head: a registered fusion head taking the list of filled embeddings and ``present``.
        method: the fusion method's name (kept for logging and reports).
        linear_terms: optional fixed linear term per modality (:class:`~clinfuse.fusion.linear_base.LinearTerm`,
            ``fusion.linear_base``), zero until a fit is written into them
            (:func:`~clinfuse.training.linear_base.set_linear_base`); the head's logits are added at a learned
            scale.

    With linear terms, :meth:`encode` appends each modality's term ``(B, n_outputs)`` to its embedding and
    :meth:`fuse` splits it off again, so every caller of the two steps (explanations over coalitions, feature
    attributions) handles the linear part along with its modality.
    """

    def __init__(
        self,
        encoders: dict[str, nn.Module],
        head: nn.Module,
        method: str,
        linear_terms: dict[str, LinearTerm] | None = None,
    ) -> None:
        super().__init__()
        self.modalities: list[str] = list(encoders)
        self.method = method
        self.encoders = nn.ModuleDict(encoders)
        # Zeros: an absent modality starts as a neutral input and the model learns what "absent" means.
        self.missing = nn.ParameterDict({m: nn.Parameter(torch.zeros(enc.embed_dim)) for m, enc in encoders.items()})
        self.head = head
        self.linear_terms = None if linear_terms is None else nn.ModuleDict(linear_terms)
        if self.linear_terms is not None:
            n_outputs = next(iter(linear_terms.values())).weight.shape[0]
            self.linear_bias = nn.Parameter(torch.zeros(n_outputs))
            # Learned: how much of the networks' output joins the base. It starts at 1 (an unfitted base is zero,
            # so the model is then exactly the deep model); 0 is the base alone (:meth:`networks_off`).
            self.residual_scale = nn.Parameter(torch.ones(()))

    @contextmanager
    def networks_off(self) -> Iterator[None]:
        """Inside the block the model is its linear base alone (the networks' scale at 0); restored after."""
        if self.linear_terms is None:
            raise ValueError("the model has no linear base (fusion.linear_base is false)")
        saved = self.residual_scale.detach().clone()
        with torch.no_grad():
            self.residual_scale.zero_()
        try:
            yield
        finally:
            with torch.no_grad():
                self.residual_scale.copy_(saved)

    @property
    def n_linear(self) -> int:
        """Logits each modality's linear term appends to its embedding (0 without a linear base)."""
        return 0 if self.linear_terms is None else int(self.linear_bias.shape[0])

    @property
    def embed_dims(self) -> dict[str, int]:
        """Embedding size of each modality."""
        return {m: int(self.missing[m].shape[0]) for m in self.modalities}

    def encode(self, inputs: dict[str, torch.Tensor], present: torch.Tensor) -> dict[str, torch.Tensor]:
        """Embed each modality on the rows where it is present.

        Args:
            inputs: modality name → batch tensor (image ``(B, C, *spatial)``, tables ``(B, F)``); values of
                absent rows are ignored (they may be zeros or NaN); a modality absent from every row may be
                left out.
            present: bool ``(B, M)`` in modality order.

        Returns:
            modality name → ``(B, D_m + n_linear)`` embeddings (the linear term, when there is one, in the last
            ``n_linear`` columns), zeros on absent rows.
        """
        present = present.bool()
        batch = present.shape[0]
        out: dict[str, torch.Tensor] = {}
        for i, m in enumerate(self.modalities):
            rows = present[:, i].nonzero(as_tuple=True)[0]
            reference = self.missing[m]
            if rows.numel() == 0:
                out[m] = reference.new_zeros(batch, reference.shape[0] + self.n_linear)
                continue
            if m not in inputs:
                raise KeyError(f"modality {m!r} is present in {rows.numel()} rows but has no input tensor")
            x = inputs[m].index_select(0, rows.to(inputs[m].device))
            emb = _run_encoder(self.encoders[m], x)
            if self.linear_terms is not None:
                term = self.linear_terms[m](x)
                emb = torch.cat([emb.to(term.dtype), term], dim=1)
            out[m] = emb.new_zeros(batch, emb.shape[1]).index_copy(0, rows.to(emb.device), emb)
        return out

    def fuse(self, embeddings: dict[str, torch.Tensor], present: torch.Tensor) -> FusionOutput:
        """Substitute missing embeddings on absent rows and apply the fusion head.

        Args:
            embeddings: modality name → ``(B, D_m + n_linear)`` as :meth:`encode` returns them; a modality left
                out counts as absent on every row.
            present: bool ``(B, M)`` in modality order.

        Returns:
            :class:`FusionOutput` with ``logits (B, n_outputs)`` and ``gates (B, M) | None``.
        """
        present = present.bool()
        batch = present.shape[0]
        filled = []
        linear = None if self.linear_terms is None else self.linear_bias.expand(batch, -1)
        for i, m in enumerate(self.modalities):
            missing = self.missing[m].unsqueeze(0).expand(batch, -1)
            emb = embeddings.get(m)
            if emb is not None and linear is not None:
                emb, term = emb[:, : missing.shape[1]], emb[:, missing.shape[1] :]
                # An absent modality's term is 0: its features at their training means.
                linear = linear + torch.where(present[:, i : i + 1], term, torch.zeros_like(term))
            # torch.where (not arithmetic masking) so NaN or inf in absent rows never leaks into the output.
            filled.append(missing if emb is None else torch.where(present[:, i : i + 1], emb, missing))
        output = self.head(filled, present)
        if linear is None:
            return output
        return FusionOutput(linear + self.residual_scale * output.logits, output.gates)

    def forward(self, inputs: dict[str, torch.Tensor], present: torch.Tensor) -> FusionOutput:
        """``fuse(encode(inputs, present), present)``."""
        return self.fuse(self.encode(inputs, present), present)


def modality_dropout(present: torch.Tensor, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomly hide present modalities (training augmentation), never emptying a row.

    Args:
        present: bool ``(B, M)`` actual presence.
        rate: probability of hiding each present modality.
        generator: optional random generator (on ``present``'s device) for reproducibility.

    Returns:
        bool ``(B, M)`` thinned presence; a row that would lose all its modalities keeps one of them,
        chosen uniformly at random.
    """
    present = present.bool()
    if rate <= 0.0:
        return present.clone()
    keep = torch.rand(present.shape, generator=generator, device=present.device) >= rate
    thinned = present & keep
    emptied = present.any(dim=1) & ~thinned.any(dim=1)
    scores = torch.rand(present.shape, generator=generator, device=present.device).masked_fill(~present, -1.0)
    rescue = torch.zeros_like(present).scatter_(1, scores.argmax(dim=1, keepdim=True), True)
    return thinned | (rescue & emptied.unsqueeze(1))


def build_model(specs: dict[str, EncoderSpec], fusion: FusionConfig, n_outputs: int) -> MultimodalModel:
    """Build encoders and the fusion head for the given modalities.

    Args:
        specs: modality name → :class:`~clinfuse.encoders.EncoderSpec` (the encoder its kind chose, with the
            family's arguments), in presence-column order (one entry: a unimodal model).
        fusion: fusion settings (``fusion.method`` picks the registered head; ``fusion.linear_base`` adds the
            linear terms, all zero until :func:`~clinfuse.training.linear_base.set_linear_base` writes a fit
            into them or a saved model's weights are loaded).
        n_outputs: logits per patient: 1 for binary and survival, K for multiclass.
    """
    if not specs:
        raise ConfigError("no modalities to model; list at least one in the config's modalities")
    if n_outputs < 1:
        raise ValueError(f"n_outputs must be positive, got {n_outputs}")
    for name in specs:
        if not name or "." in name or name in dir(nn.ModuleDict):
            raise ConfigError(f"modality name {name!r} cannot name a model part; rename it in cohort.yaml")
    encoders = {}
    for name, spec in specs.items():
        encoder = create_encoder(spec.name, **spec.args)
        if spec.weights is not None:
            load_weights(encoder, spec.weights)
        encoders[name] = encoder
    head = create_fusion(fusion.method, [enc.embed_dim for enc in encoders.values()], n_outputs, fusion)
    terms = None
    if fusion.linear_base:
        terms = {name: LinearTerm(linear_width(spec), n_outputs) for name, spec in specs.items()}
    return MultimodalModel(encoders, head, fusion.method, terms)


def _run_encoder(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run an encoder; a lone training row uses batch-norm running statistics instead of failing.

    Gathering only present rows can leave one image in a training batch, and batch norm cannot estimate
    statistics from a single sample.
    """
    norms = [m for m in encoder.modules() if isinstance(m, _BATCH_NORMS) and m.training]
    if x.shape[0] > 1 or not norms:
        return encoder(x)
    for norm in norms:
        norm.eval()
    try:
        return encoder(x)
    finally:
        for norm in norms:
            norm.train()
