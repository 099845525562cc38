"""A penalised linear model inside the deep model: the deep network learns what it misses (``fusion.linear_base``).

On cohorts of hundreds of patients a deep model trained by minibatch steps and stopped early on a noisy
validation metric fits each modality's linear effects less well than a penalised regression whose penalty an
inner cross-validation picks (docs/results.md, "A linear base under the deep model"). With a linear base the
model's logits are

    logits = bias + sum_m present_m * W_m (phi_m(x_m) - mu_m) + residual_scale * head(embeddings)

where ``phi_m`` is the summary a classical model reads of modality m (a table's columns as they are; an image's
or a recording's intensity statistics and pooled grid), ``mu_m`` its training mean and ``W_m`` the coefficients
of the penalised fit on the fold's training patients (:mod:`clinfuse.training.linear_base` fits them and they
stay fixed). ``residual_scale`` is learned. Training validates the base alone first (epoch 0, the networks'
scale at 0): it is the fold's model unless an epoch of training improves on it, so the networks are kept only
where validation says they add to the penalised fit.

A modality outside a coalition (or absent) contributes ``W_m (mu_m - mu_m) = 0``: the linear part treats an
absent modality the way the classical baselines and their Shapley game do (features at their training means).
"""

from __future__ import annotations

import torch
from torch import nn

from clinfuse.encoders import EncoderSpec, encoder_kind
from clinfuse.encoders.summary import full_grid_summary, full_grid_width


def linear_features(x: torch.Tensor) -> torch.Tensor:
    """What the linear base reads of a batch: a feature vector ``(n, F)`` as it is, a spatial input
    ``(n, C, *spatial)`` as its intensity statistics and full pooled grid (the same width whatever the input's
    size, :func:`~clinfuse.encoders.summary.full_grid_summary`)."""
    return x if x.ndim == 2 else full_grid_summary(x)


def linear_width(spec: EncoderSpec) -> int:
    """Width of :func:`linear_features` for the inputs of a modality's encoder."""
    if encoder_kind(spec.name) == "vector":
        return int(spec.args["in_features"])
    return full_grid_width(int(spec.args["spatial_dims"]), int(spec.args["in_channels"]))


class LinearTerm(nn.Module):
    """One modality's fixed linear term ``W (phi(x) - mu)``: ``(n, ...)`` inputs to ``(n, n_outputs)``.

    ``W`` and ``mu`` are buffers (saved with the model, never trained): the penalised fit chose them with a
    penalty the optimiser would otherwise undo.

    Args:
        width: width of :func:`linear_features` of the modality's inputs.
        n_outputs: logits per patient.
    """

    def __init__(self, width: int, n_outputs: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.zeros(n_outputs, width))
        self.register_buffer("center", torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The term's logits ``(n, n_outputs)``, in the weights' precision even under mixed precision."""
        # Half precision would round the fit's coefficients (which are per raw unit, so can be large) and the
        # summary's quantiles; the term is one small matrix product, so it stays out of autocast.
        with torch.autocast(x.device.type, enabled=False):
            features = linear_features(x.to(self.weight.dtype))
            return (features - self.center) @ self.weight.T
