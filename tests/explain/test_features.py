from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from clinfuse.explain.features import SUMS_TO, gene_attributions, tabular_attributions

DIMS = {"image": 4, "clinical": 6, "genomic": 10}
GROUPS = ["age", "sex", "sex", "stage", "stage", "stage"]


def _encoded(model, inputs, present):
    with torch.no_grad():
        return model.encode(inputs, present)


def _one_hot_clinical(n, seed):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 6), dtype=np.float32)
    x[:, 0] = rng.normal(size=n)
    x[np.arange(n), 1 + rng.integers(0, 2, n)] = 1.0
    x[np.arange(n), 3 + rng.integers(0, 3, n)] = 1.0
    return x


@pytest.mark.slow  # the first shap Exact call of a session compiles shap's numba kernels (~8 s)
def test_exact_tabular_sums_to_fx_minus_background_mean(toy_fusion, make_batch):
    model = toy_fusion(DIMS, seed=21).eval()
    inputs, present = make_batch(DIMS, 8, seed=22)
    inputs["clinical"] = torch.from_numpy(_one_hot_clinical(8, 23))
    embeddings = _encoded(model, inputs, present)
    background = _one_hot_clinical(30, 24)
    raw = pd.DataFrame({"age": np.arange(8) + 50, "sex": ["F", "M"] * 4, "stage": ["I", "II"] * 4})

    result = tabular_attributions(
        model, "clinical", inputs["clinical"].numpy(), embeddings, present, background, GROUPS, raw_values=raw
    )
    assert result.method == "exact"
    explained = np.flatnonzero(present[:, 1].numpy())
    np.testing.assert_array_equal(result.patient_index, explained)
    assert result.features == ["age", "sex", "stage"]

    with torch.no_grad():
        for r, p in enumerate(explained):
            rows = {m: e[p : p + 1].expand(len(background), -1) for m, e in embeddings.items()}
            rows["clinical"] = model.encode(
                {"clinical": torch.from_numpy(background)},
                torch.tensor([[False, True, False]]).expand(30, -1),
            )["clinical"]
            base = model.fuse(rows, present[p : p + 1].expand(30, -1)).logits[:, 0].double().mean().item()
            full = model(inputs, present).logits[p, 0].item()
            assert result.base_values[r] == pytest.approx(base, abs=1e-5)
            assert result.f_x[r] == pytest.approx(full, abs=1e-5)
    np.testing.assert_allclose(result.values.sum(1), result.f_x - result.base_values, atol=1e-6)
    assert np.abs(result.values).max() > 1e-3

    # Grouped attributions are the sums of the per-column ones.
    columns = tabular_attributions(
        model,
        "clinical",
        inputs["clinical"].numpy(),
        embeddings,
        present,
        background,
        [f"c{i}" for i in range(6)],
    )
    np.testing.assert_allclose(result.values[:, 1], columns.values[:, 1:3].sum(1), atol=1e-9)
    np.testing.assert_allclose(result.values[:, 2], columns.values[:, 3:].sum(1), atol=1e-9)

    frame = result.to_frame()
    assert list(frame.columns) == ["patient_index", "feature", "value", "attribution"]
    assert len(frame) == 3 * len(explained)
    first = frame[frame["patient_index"] == explained[0]].set_index("feature")
    assert first.loc["age", "value"] == 50 + explained[0]
    summary = result.summary()
    assert summary["mean_abs_attribution"].is_monotonic_decreasing
    assert summary.set_index("feature").loc["sex", "mean_abs_attribution"] == pytest.approx(
        np.abs(result.values[:, 1]).mean()
    )
    assert len(result.to_frame(top_k=1)) == len(explained)


def test_permutation_used_for_wider_tables_and_stays_efficient(toy_fusion, make_batch):
    dims = {"clinical": 14, "genomic": 3}
    model = toy_fusion(dims, seed=25).eval()
    inputs, present = make_batch(dims, 4, seed=26, p_absent=0.0)
    embeddings = _encoded(model, inputs, present)
    background = np.random.default_rng(27).normal(size=(80, 14)).astype(np.float32)
    groups = [f"v{i}" for i in range(14)]
    result = tabular_attributions(
        model,
        "clinical",
        inputs["clinical"].numpy(),
        embeddings,
        present,
        background,
        groups,
        max_background=20,
    )
    assert result.method == "permutation"
    np.testing.assert_allclose(result.values.sum(1), result.f_x - result.base_values, atol=1e-5)
    one_hot_values = result.to_frame()["value"]
    assert one_hot_values.map(lambda v: isinstance(v, float)).all()


def test_gene_attributions_rank_the_planted_gene(toy_fusion, make_batch):
    model = toy_fusion(DIMS, seed=28).eval()
    with torch.no_grad():
        weight = model.encoders["genomic"].weight
        weight[:, [c for c in range(10) if c != 3]] = 0.0
        weight[:, 3] = torch.tensor([2.0, -1.5, 1.0, 0.5])
    inputs, present = make_batch(DIMS, 6, seed=29)
    present[:, 2] = True
    embeddings = _encoded(model, inputs, present)
    background = torch.randn(40, 10, generator=torch.Generator().manual_seed(30))
    genes = [f"g{i}" for i in range(10)]
    result = gene_attributions(
        model, "genomic", inputs["genomic"], embeddings, present, background, genes, nsamples=100
    )
    assert result.method == "gradient"
    assert result.summary()["feature"].iloc[0] == "g3"
    others = np.delete(result.values, 3, axis=1)
    assert np.abs(others).max() < 1e-9
    assert np.abs(result.values[:, 3]).min() > 1e-4
    # Expected gradients add up to f(x) - E_background f up to sampling error.
    np.testing.assert_allclose(result.values.sum(1), result.f_x - result.base_values, atol=0.1)
    top = result.to_frame(top_k=2)
    assert (top.groupby("patient_index")["feature"].first() == "g3").all()


def test_sums_to_documents_each_kind():
    assert set(SUMS_TO) == {"modality", "tabular", "genomic", "image"}
    assert "not" in SUMS_TO["tabular"] and "phi" in SUMS_TO["tabular"]
