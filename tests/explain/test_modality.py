from __future__ import annotations

import itertools
import json
from math import factorial

import numpy as np
import pytest
import torch

from clinfuse.explain.modality import (
    cohort_summary,
    explain_model_modalities,
    modality_shapley,
    model_modality_shapley,
    shapley_interactions,
)
from clinfuse.explain.reference import shap_modality_values

DIMS3 = {"image": 5, "clinical": 3, "genomic": 7}
DIMS4 = {"image": 5, "clinical": 3, "genomic": 7, "pathology": 2}


def _shapley_on(model, inputs, present, **kwargs):
    """Shapley values of a float64 copy of the toy (in place), so the math is checked to ~1e-12."""
    model.double()
    for m in inputs:
        inputs[m] = inputs[m].double()
    with torch.no_grad():
        emb = model.encode(inputs, present)
    return modality_shapley(lambda e, p: model.fuse(e, p).logits, emb, present, model.modalities, **kwargs)


def _brute_force_phi(model, inputs, present, patient):
    """Textbook Shapley over the patient's present modalities by enumerating subsets with loops."""
    players = [k for k in range(len(model.modalities)) if present[patient, k]]
    row = {m: x[patient : patient + 1] for m, x in inputs.items()}

    def value(coalition):
        mask = torch.zeros(1, len(model.modalities), dtype=torch.bool)
        mask[0, list(coalition)] = True
        with torch.no_grad():
            return float(model(row, present[patient : patient + 1] & mask).logits[0, 0])

    phi = np.zeros(len(model.modalities))
    p = len(players)
    for i in players:
        others = [j for j in players if j != i]
        for size in range(p):
            for subset in itertools.combinations(others, size):
                w = factorial(size) * factorial(p - size - 1) / factorial(p)
                phi[i] += w * (value(subset + (i,)) - value(subset))
    return phi


@pytest.mark.parametrize("dims", [DIMS3, DIMS4])
def test_efficiency_absent_players_and_brute_force(toy_fusion, make_batch, dims):
    model = toy_fusion(dims, seed=1).eval()
    inputs, present = make_batch(dims, 40, seed=2)
    result = _shapley_on(model, inputs, present)

    with torch.no_grad():
        full = model(inputs, present).logits[:, 0].double().numpy()
        empty = model.fuse(model.encode(inputs, present), torch.zeros_like(present)).logits[:, 0].double().numpy()
    np.testing.assert_allclose(result.f_x, full, atol=1e-9, rtol=0)
    np.testing.assert_allclose(result.f_empty, empty, atol=1e-9, rtol=0)
    np.testing.assert_allclose(result.phi.sum(1), result.f_x - result.f_empty, atol=1e-9, rtol=0)
    assert np.all(result.phi[~present.numpy()] == 0.0)
    assert np.all(result.phi[1] == 0.0) and result.f_x[1] == result.f_empty[1]
    assert np.abs(result.phi).max() > 1e-3  # the game is not trivially zero
    for patient in (0, 2, 3):
        np.testing.assert_allclose(
            result.phi[patient], _brute_force_phi(model, inputs, present, patient), atol=1e-9, rtol=0
        )


def test_ignored_modality_gets_zero(toy_fusion, make_batch):
    model = toy_fusion(DIMS3, ignore=("clinical",), seed=3).eval()
    inputs, present = make_batch(DIMS3, 30, seed=4)
    result = model_modality_shapley(model, (inputs, present), batch_size=11)
    assert np.abs(result.phi[:, 1]).max() < 1e-9
    np.testing.assert_allclose(result.phi.sum(1), result.f_x - result.f_empty, atol=1e-12)
    assert np.abs(result.phi[:, [0, 2]]).max() > 1e-3


def test_additive_model_phi_is_own_part(additive_toy, make_batch):
    model = additive_toy(DIMS4, seed=5).eval()
    inputs, present = make_batch(DIMS4, 30, seed=6)
    result = _shapley_on(model, inputs, present)
    with torch.no_grad():
        emb = model.encode(inputs, present)
        for k, m in enumerate(model.modalities):
            own = model.part(m, emb[m]).double().numpy()
            missing = float(model.part(m, model.missing[m][None])[0])
            expected = np.where(present[:, k].numpy(), own - missing, 0.0)
            np.testing.assert_allclose(result.phi[:, k], expected, atol=1e-9, rtol=0)
    interactions = shapley_interactions(result)
    off_diagonal = interactions.values[:, ~np.eye(4, dtype=bool)]
    assert np.abs(off_diagonal).max() < 1e-6
    np.testing.assert_allclose(np.diagonal(interactions.values, axis1=1, axis2=2), result.phi, atol=1e-12)


def test_symmetric_modalities_get_equal_phi():
    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    missing = torch.randn(3)

    def fuse(emb, present):
        total = sum(torch.where(present[:, k, None], emb[m], missing) for k, m in enumerate(["a", "b", "c"]))
        return head(total)

    shared = torch.randn(6, 3)
    emb = {"a": shared, "b": shared.clone(), "c": torch.randn(6, 3)}
    present = torch.ones(6, 3, dtype=torch.bool)
    result = modality_shapley(fuse, emb, present, ["a", "b", "c"], output_index=1)
    np.testing.assert_allclose(result.phi[:, 0], result.phi[:, 1], atol=1e-9)
    assert np.abs(result.phi[:, 0] - result.phi[:, 2]).max() > 1e-3


def test_batch_size_does_not_change_values(toy_fusion, make_batch):
    model = toy_fusion(DIMS4, seed=7).eval()
    inputs, present = make_batch(DIMS4, 25, seed=8)
    big = _shapley_on(model, inputs, present)
    small = _shapley_on(model, inputs, present, batch_size=7)
    np.testing.assert_allclose(small.phi, big.phi, atol=1e-9, rtol=0)
    np.testing.assert_allclose(small.coalition_values, big.coalition_values, atol=1e-9, rtol=0)


def test_agrees_with_shap_exact(toy_fusion, make_batch):
    model = toy_fusion(DIMS3, n_outputs=3, seed=9).eval()
    inputs, present = make_batch(DIMS3, 12, seed=10)
    result = _shapley_on(model, inputs, present, output_index=2)
    with torch.no_grad():
        emb = model.encode(inputs, present)
    phi, base = shap_modality_values(lambda e, p: model.fuse(e, p).logits, emb, present, model.modalities, 2)
    np.testing.assert_allclose(result.phi, phi, atol=1e-9, rtol=0)
    np.testing.assert_allclose(result.f_empty, base, atol=1e-9, rtol=0)


def test_predicted_class_and_interactions(toy_fusion, make_batch):
    model = toy_fusion(DIMS3, n_outputs=4, seed=11).eval()
    inputs, present = make_batch(DIMS3, 30, seed=12)
    result = _shapley_on(model, inputs, present, output_index="predicted")
    with torch.no_grad():
        logits = model(inputs, present).logits.double().numpy()
    np.testing.assert_array_equal(result.output_index, logits.argmax(1))
    np.testing.assert_allclose(result.f_x, logits.max(1), atol=1e-9, rtol=0)
    np.testing.assert_allclose(result.phi.sum(1), result.f_x - result.f_empty, atol=1e-9, rtol=0)

    interactions = shapley_interactions(result)
    np.testing.assert_allclose(interactions.values.sum(2), result.phi, atol=1e-9)
    np.testing.assert_allclose(interactions.values, interactions.values.transpose(0, 2, 1), atol=1e-12)
    # Full patient, M=3: Phi_ij = 1/2 * sum_S w(S) * delta_ij(S), w = 1/2 for S={} and S={k}.
    patient = int(np.flatnonzero(present.all(1).numpy())[0])
    v = result.coalition_values[patient]
    expected = 0.5 * (0.5 * (v[3] - v[1] - v[2] + v[0]) + 0.5 * (v[7] - v[5] - v[6] + v[4]))
    assert interactions.values[patient, 0, 1] == pytest.approx(expected, abs=1e-9)
    assert abs(expected) > 1e-4


def test_cohort_summary_numbers(toy_fusion, make_batch):
    model = toy_fusion(DIMS3, seed=13).eval()
    inputs, present = make_batch(DIMS3, 40, seed=14)
    result = _shapley_on(model, inputs, present)
    labels = np.arange(40) % 2
    predictions = (result.f_x > np.median(result.f_x)).astype(int)
    summary = cohort_summary(result, labels, predictions, ["no", "yes"])

    overall = summary["overall"]
    assert sum(overall["share"].values()) == pytest.approx(1.0)
    assert overall["mean_abs_phi"]["genomic"] == pytest.approx(np.abs(result.phi[:, 2]).mean())
    assert summary["n_present"]["clinical"] == int(present[:, 1].sum())
    assert summary["by_true_class"]["yes"]["n"] == 20
    assert summary["by_true_class"]["yes"]["mean_phi"]["image"] == pytest.approx(result.phi[1::2, 0].mean())
    assert summary["by_predicted_class"]["yes"]["n"] == int(predictions.sum())
    when_present = np.abs(result.phi[present[:, 0].numpy(), 0]).mean()
    assert overall["mean_abs_phi_when_present"]["image"] == pytest.approx(when_present)
    assert np.array(summary["interactions"]["mean"]).shape == (3, 3)
    json.dumps(summary, allow_nan=False)  # modality_summary.json must be strict JSON
    empty_class = cohort_summary(result, np.zeros(40, dtype=int), None, ["no", "yes"])["by_true_class"]["yes"]
    assert empty_class["n"] == 0 and empty_class["mean_abs_phi"]["image"] == 0.0


def test_explain_model_modalities_frame_from_loader(toy_fusion, make_batch):
    model = toy_fusion(DIMS3, seed=15)
    model.train()
    inputs, present = make_batch(DIMS3, 10, seed=16)
    batches = [
        {
            **{m: x[s : s + 4] for m, x in inputs.items()},
            "present": present[s : s + 4],
            "index": torch.arange(s, s + 4)[: len(present[s : s + 4])],
        }
        for s in range(0, 10, 4)
    ]
    frame = explain_model_modalities(model, batches, patients=[f"p{i}" for i in range(10)], labels=np.zeros(10))
    assert model.training  # mode restored
    expected = ["patient", "label", "f_x", "f_empty"]
    expected += [f"{kind}_{m}" for kind in ("phi", "gate", "present") for m in DIMS3]
    assert list(frame.columns) == expected
    assert list(frame.index) == list(range(10))
    with torch.no_grad():
        out = model.eval()(inputs, present)
    np.testing.assert_allclose(frame["f_x"], out.logits[:, 0].numpy(), atol=1e-6)
    np.testing.assert_allclose(frame[[f"gate_{m}" for m in DIMS3]], out.gates.numpy(), atol=1e-6)
    direct = model_modality_shapley(model, (inputs, present))
    np.testing.assert_allclose(frame[[f"phi_{m}" for m in DIMS3]], direct.phi, atol=1e-6)
