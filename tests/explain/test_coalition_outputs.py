"""Coalition outputs: the same coalitions as the modality Shapley values, every output column, fold means."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clinfuse.explain.coalition_outputs import (
    CoalitionOutputs,
    average_coalition_outputs,
    coalition_outputs,
    model_coalition_outputs,
)
from clinfuse.explain.modality import model_modality_shapley

DIMS3 = {"image": 5, "clinical": 3, "genomic": 7}


def test_every_column_agrees_with_modality_shapley(toy_fusion, make_batch) -> None:
    model = toy_fusion(DIMS3, n_outputs=3, seed=1).eval()
    inputs, present = make_batch(DIMS3, 25, seed=2)
    outputs = model_coalition_outputs(model, (inputs, present), batch_size=17)
    assert outputs.logits.shape == (25, 8, 3) and outputs.modalities == list(DIMS3)
    np.testing.assert_array_equal(outputs.present, present.numpy())
    for k in range(3):
        shapley = model_modality_shapley(model, (inputs, present), output_index=k)
        np.testing.assert_allclose(outputs.logits[:, :, k], shapley.coalition_values, atol=1e-12, rtol=0)
    # Patient 1 has no modality: every coalition plays as the empty one.
    np.testing.assert_array_equal(outputs.logits[1], np.repeat(outputs.logits[1, :1], 8, axis=0))


def test_loader_batches_keep_order_and_index(toy_fusion, make_batch) -> None:
    model = toy_fusion(DIMS3, seed=3).eval()
    inputs, present = make_batch(DIMS3, 20, seed=4)
    batches = [
        {**{m: x[s] for m, x in inputs.items()}, "present": present[s], "index": np.arange(20)[s] + 100}
        for s in (slice(0, 8), slice(8, 20))
    ]
    whole = model_coalition_outputs(model, (inputs, present))
    split = model_coalition_outputs(model, batches)
    # Encoders run in float32 batch by batch, so a different batching rounds their embeddings differently.
    np.testing.assert_allclose(split.logits, whole.logits, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(split.index, np.arange(100, 120))
    assert model.training is False


def test_fuse_level_checks_its_arguments() -> None:
    emb = {"a": torch.zeros(3, 2)}
    with pytest.raises(ValueError, match="lack modalities"):
        coalition_outputs(lambda e, p: e["a"], emb, np.ones((3, 2), bool), ["a", "b"])
    with pytest.raises(ValueError, match="present must be"):
        coalition_outputs(lambda e, p: e["a"], emb, np.ones((3, 1), bool), ["a", "b"])


def test_average_is_the_mean_logit_of_the_same_patients(toy_fusion, make_batch) -> None:
    inputs, present = make_batch(DIMS3, 30, seed=5)
    folds = [model_coalition_outputs(toy_fusion(DIMS3, seed=s).eval(), (inputs, present)) for s in (6, 7)]
    mean = average_coalition_outputs(folds)
    np.testing.assert_allclose(mean.logits, (folds[0].logits + folds[1].logits) / 2, atol=1e-15, rtol=0)
    assert np.abs(folds[0].logits - folds[1].logits).max() > 1e-2
    shuffled = CoalitionOutputs(folds[1].modalities, folds[1].logits, folds[1].present[::-1])
    with pytest.raises(ValueError, match="same patients"):
        average_coalition_outputs([folds[0], shuffled])
    with pytest.raises(ValueError, match="no coalition outputs"):
        average_coalition_outputs([])
