"""The explanations on clinfuse's own MultimodalModel (every registered fusion method)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clinfuse.config import EncoderConfig, FusionConfig
from clinfuse.encoders import EncoderSpec, encoder_spec
from clinfuse.explain.features import gene_attributions, tabular_attributions
from clinfuse.explain.modality import explain_model_modalities, model_modality_shapley
from clinfuse.explain.reference import shap_modality_values
from clinfuse.explain.saliency import image_saliency
from clinfuse.fusion import build_model, list_fusions


def _specs() -> dict[str, EncoderSpec]:
    table = EncoderConfig(embed_dim=8, hidden=[16])
    image = {"spatial_dims": 2, "in_channels": 1, "size": [16, 16]}
    return {
        "image": encoder_spec("image", "spatial", "resnet10", EncoderConfig(name="resnet10", embed_dim=8), image),
        "clinical": encoder_spec("clinical", "vector", "mlp", table, {"in_features": 5}),
        "genomic": encoder_spec("genomic", "vector", "snn", table, {"in_features": 9}),
    }


def _data(n: int, seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    inputs = {
        "image": torch.randn(n, 1, 16, 16, generator=generator),
        "clinical": torch.randn(n, 5, generator=generator),
        "genomic": torch.randn(n, 9, generator=generator),
    }
    present = torch.rand(n, 3, generator=generator) > 0.3
    present[0] = True
    return inputs, present


def _randomise_missing(model: torch.nn.Module) -> None:
    # Fresh models start with zero missing embeddings; random ones make the missing path non-trivial.
    with torch.no_grad():
        for parameter in model.missing.values():
            parameter.normal_()


@pytest.mark.parametrize("method", list_fusions())
def test_real_model_efficiency_and_shap_agreement(method):
    torch.manual_seed(40)
    model = build_model(_specs(), FusionConfig(method=method, hidden=16), n_outputs=3)
    _randomise_missing(model)
    inputs, present = _data(10, 41)
    result = model_modality_shapley(model, (inputs, present), output_index="predicted")
    np.testing.assert_allclose(result.phi.sum(1), result.f_x - result.f_empty, atol=1e-9)
    assert np.all(result.phi[~present.numpy()] == 0.0)
    model.eval()
    with torch.no_grad():
        logits = model(inputs, present).logits.double().numpy()
        embeddings = model.encode(inputs, present)
    np.testing.assert_array_equal(result.output_index, logits.argmax(1))
    np.testing.assert_allclose(result.f_x, logits.max(1), atol=1e-5)
    assert (result.gates is not None) == (method == "gated")

    patient = 0
    k = int(result.output_index[patient])
    phi, base = shap_modality_values(
        lambda e, p: model.fuse(e, p).logits,
        {m: e[:1] for m, e in embeddings.items()},
        present[:1],
        model.modalities,
        k,
    )
    np.testing.assert_allclose(result.phi[0], phi[0], atol=1e-5)
    np.testing.assert_allclose(result.f_empty[0], base[0], atol=1e-5)


def test_real_gated_model_frame_and_feature_attributions():
    torch.manual_seed(42)
    model = build_model(_specs(), FusionConfig(method="gated", hidden=16), n_outputs=1)
    _randomise_missing(model)
    inputs, present = _data(6, 43)
    present[:, :] = True
    frame = explain_model_modalities(model, {**inputs, "present": present})
    gates = frame[["gate_image", "gate_clinical", "gate_genomic"]].to_numpy()
    assert np.all((gates >= 0) & (gates <= 1))
    phis = frame[["phi_image", "phi_clinical", "phi_genomic"]].to_numpy()
    np.testing.assert_allclose(phis.sum(1), frame["f_x"] - frame["f_empty"], atol=1e-9)

    model.eval()
    with torch.no_grad():
        embeddings = model.encode(inputs, present)
    background = np.random.default_rng(44).normal(size=(20, 5)).astype(np.float32)
    clinical = tabular_attributions(
        model,
        "clinical",
        inputs["clinical"].numpy()[:3],
        {m: e[:3] for m, e in embeddings.items()},
        present[:3],
        background,
        ["a", "b", "b", "c", "d"],
    )
    np.testing.assert_allclose(clinical.values.sum(1), clinical.f_x - clinical.base_values, atol=1e-5)
    genes = gene_attributions(
        model,
        "genomic",
        inputs["genomic"][:2],
        {m: e[:2] for m, e in embeddings.items()},
        present[:2],
        torch.randn(10, 9),
        [f"g{i}" for i in range(9)],
        nsamples=50,
    )
    assert genes.values.shape == (2, 9) and np.isfinite(genes.values).all()
    saliency = image_saliency(
        model,
        "image",
        inputs["image"][:1],
        {m: e[:1] for m, e in embeddings.items()},
        present[:1],
        mask_size=4,
    )
    assert saliency.shape == (16, 16) and np.isfinite(saliency).all()
    assert not model.training
